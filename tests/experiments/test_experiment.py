"""experiments.experiment and experiments.decisions: ramps, rollbacks, promotion and the bandit on simulated feedback streams (no Serve)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from experiments.config import ExperimentConfig
from experiments.experiment import Experiment


def feed(experiment: Experiment, rng, truth: dict[str, float], n: int, *, vol: float = 0.01, latency=1.0) -> None:
    """``n`` requests routed by the experiment's shares, each with its feedback; decisions after every 20."""
    names = sorted(experiment.shares)
    for i in range(n):
        arm = rng.choice(names, p=[experiment.shares[a] for a in names])
        experiment.assigned(arm, latency)
        experiment.feedback(arm, float(rng.normal(truth[arm], vol)))
        if i % 20 == 19:
            experiment.decide()


def test_a_better_challenger_ramps_step_by_step_then_is_promoted():
    config = ExperimentConfig(control="ew", challengers=("ppo",), routing="ramp", ramp={"min_feedback": 100})
    experiment = Experiment(config, rng=np.random.default_rng(0))
    assert experiment.shares == pytest.approx({"ew": 0.95, "ppo": 0.05})
    feed(experiment, np.random.default_rng(1), {"ew": 0.0, "ppo": 0.004}, 20_000)
    kinds = [d.kind for d in experiment.decisions]
    assert kinds[:4] == ["start", "ramp", "ramp", "ramp"] and kinds[-1] == "promote"
    assert [d.shares["ppo"] for d in experiment.decisions if d.kind == "ramp"] == pytest.approx([0.25, 0.5, 1.0])
    assert experiment.shares == {"ew": 0.0, "ppo": 1.0}


def test_a_worse_challenger_is_rolled_back_with_its_reason():
    config = ExperimentConfig(control="ew", challengers=("bad",), routing="ramp", ramp={"min_feedback": 100})
    experiment = Experiment(config, rng=np.random.default_rng(0))
    feed(experiment, np.random.default_rng(2), {"ew": 0.0, "bad": -0.005}, 20_000)
    rollback = [d for d in experiment.decisions if d.kind == "rollback"]
    assert len(rollback) == 1 and "earns less" in rollback[0].reason
    assert experiment.shares["bad"] == 0.0


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [("latency", 400.0, "latency p99"), ("drawdown", None, "drawdown")],
)
def test_guardrails_roll_back(setting, value, words):
    config = ExperimentConfig(
        control="ew",
        challengers=("c",),
        routing="fixed",
        split={"ew": 0.5, "c": 0.5},
        guardrails={"drawdown_period_s": 10.0},
    )
    experiment = Experiment(config, rng=np.random.default_rng(0))
    rng = np.random.default_rng(3)
    for i in range(400):  # 10 feedback returns a period per arm: 20 periods; -2% a period is a 33% drawdown
        arm = "c" if i % 2 else "ew"
        experiment.assigned(arm, value if (setting == "latency" and arm == "c") else 1.0)
        bad = setting == "drawdown" and arm == "c"
        experiment.feedback(arm, -0.02 if bad else float(rng.normal(0, 0.001)), at=float(i))
    made = experiment.decide()
    assert [d.kind for d in made] == ["rollback"] and words in made[0].reason
    assert experiment.shares == {"c": 0.0, "ew": 1.0}


def test_the_drawdown_is_of_the_average_clients_wealth_not_of_the_pooled_returns():
    # 5,000 returns of +-1% around a mean of 0 in one period: pooled and compounded they would wander to a drawdown
    # of many percent; the period's mean is about 0, so the average client's wealth has barely moved.
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",), guardrails={"max_drawdown": 0.05}))
    rng = np.random.default_rng(6)
    for value in rng.choice([-0.01, 0.01], size=5_000):
        experiment.feedback("b", float(value), at=0.0)
    assert experiment.arms["b"].drawdown() < 0.01
    for day in range(1, 11):  # then ten days whose average client lost 1% each
        experiment.feedback("b", -0.01, at=day * 86_400.0)
    assert experiment.arms["b"].drawdown() == pytest.approx(1 - 0.99**10, abs=2e-3)
    assert "drawdown" in experiment.tripped("b")


def test_one_bad_return_at_the_start_of_a_period_is_not_a_drawdown():
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",)))
    experiment.feedback("b", -0.25, at=0.0)  # 25% on one client: above the 20% guardrail, but one return
    assert experiment.tripped("b") is None


def test_errors_trip_the_error_rate_guardrail():
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",)))
    for i in range(100):
        experiment.assigned("b", 1.0, error=i % 5 == 0)
        experiment.assigned("a", 1.0)
    assert "error rate 20.0%" in experiment.decide()[0].reason


def test_the_bandit_moves_traffic_to_the_better_arm_and_keeps_the_floor():
    config = ExperimentConfig(control="ew", challengers=("good", "bad"), routing="thompson", min_share=0.05)
    experiment = Experiment(config, rng=np.random.default_rng(0))
    feed(experiment, np.random.default_rng(4), {"ew": 0.0, "good": 0.0005, "bad": -0.0002}, 30_000)
    assert experiment.shares["good"] > 0.8
    assert min(experiment.shares.values()) >= 0.05 - 1e-9


def test_sample_ratio_follows_the_moving_split():
    config = ExperimentConfig(control="ew", challengers=("ppo",), routing="ramp", ramp={"min_feedback": 100})
    experiment = Experiment(config, rng=np.random.default_rng(0))
    feed(experiment, np.random.default_rng(5), {"ew": 0.0, "ppo": 0.0}, 4_000)
    assert len([d for d in experiment.decisions if d.kind == "ramp"]) >= 2
    assert not experiment.sample_ratio().mismatch
    for _ in range(500):  # an arm that gets far more than its share
        experiment.assigned("ppo", 1.0)
    assert experiment.sample_ratio().mismatch


def test_bad_configs_and_arms_name_the_field():
    with pytest.raises(ValueError, match="challengers"):
        ExperimentConfig(control="a", challengers=("a",))
    with pytest.raises(ValueError, match="steps"):
        ExperimentConfig(control="a", challengers=("b",), ramp={"steps": [0.5, 0.2]})
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",)))
    with pytest.raises(ConfigError, match="arm: 'zzz'"):
        experiment.feedback("zzz", 0.0)
    with pytest.raises(ConfigError, match="finite"):
        experiment.feedback("a", float("nan"))


def test_the_sample_ratio_test_counts_clients_once_not_their_every_request():
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",)))
    for i in range(40):  # 40 sticky clients split 20/20, but b's clients come back 10 times as often
        arm = "a" if i % 2 else "b"
        for _ in range(1 if arm == "a" else 10):
            experiment.assigned(arm, 1.0, client=f"client-{i}")
    assert experiment.arms["b"].requests == 200 and experiment.arms["a"].requests == 20
    ratio = experiment.sample_ratio()
    assert ratio.observed == {"a": 20, "b": 20} and not ratio.mismatch


def test_slowness_that_hits_the_control_too_rolls_nothing_back():
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",)))
    for _ in range(100):  # a cold start or a loaded machine: both arms slow
        experiment.assigned("a", 400.0)
        experiment.assigned("b", 380.0)
    assert experiment.tripped("b") is None
    for _ in range(100):
        experiment.assigned("b", 900.0)
    assert "latency p99" in experiment.tripped("b") and "control 400 ms" in experiment.tripped("b")


def test_equal_constant_returns_never_read_as_a_difference():
    # Means of a constant over different counts differ in the last bit; with no spread that must not be evidence.
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",)))
    for i in range(997):
        experiment.feedback("a", 0.001, at=float(i))
    for i in range(1003):
        experiment.feedback("b", 0.001, at=float(i))
    assert experiment.decide() == [] and experiment.shares["b"] > 0
    assert "no difference shown yet" in experiment.comparison("b")["verdict"]

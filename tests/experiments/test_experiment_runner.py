"""experiments.runner: the experiment the store runs, from the durable log only (no Serve): rebuilds after a
restart, deploys against admin changes, decisions with their reasons and sources."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from experiments.buckets import BucketLayout
from experiments.log_schema import Assignment, Feedback
from experiments.log_store import ExperimentLog
from experiments.router import Router
from experiments.runner import ExperimentRunner

KNOWN = {"ppo", "sac", "equal_weight", "growth_optimal"}


def runner(url: str) -> ExperimentRunner:
    return ExperimentRunner(ExperimentLog(url), KNOWN, "equal_weight", {"ppo": 1.0, "sac": 1.0})


def traffic(run: ExperimentRunner, rng, n: int, truth: dict[str, float], start: int = 0) -> list[tuple[str, float]]:
    """``n`` requests routed by the runner's layout, each answered and given feedback, written as the ingress does;
    the ``(arm, realised return)`` of each."""
    router = Router(run.routing().__dict__ | {"version": run.version}, KNOWN)
    rows, feedback = [], []
    for i in range(start, start + n):
        arm = router.choose(f"client-{i}").arm
        rows.append(Assignment(f"r{i}", router.experiment, arm, arm, (1.0,), 2.0, split_version=router.version))
        feedback.append(Feedback(f"r{i}", float(rng.normal(truth[arm], 0.01)), created_at=float(i)))
    run.log.append(rows, feedback)
    return [(row.arm, item.realized_return) for row, item in zip(rows, feedback)]


def test_the_default_experiment_is_a_fixed_split_and_the_same_deploy_twice_changes_nothing(tmp_path):
    run = runner(f"sqlite:///{tmp_path / 'log.db'}")
    routing = run.configure({"split": {"ppo": 1, "sac": 1}})
    assert routing.version == 1 and BucketLayout.from_json(routing.layout).shares() == pytest.approx(
        {"ppo": 0.5, "sac": 0.5}
    )
    assert run.experiment.config.control == "ppo" and run.experiment.config.challengers == ("sac",)
    assert run.configure({"split": {"ppo": 1, "sac": 1}}).version == 1  # a replica restarting: no new decision
    assert [d["kind"] for d in run.log.decisions()] == ["start"]


def test_statistics_and_state_are_rebuilt_from_the_log_after_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    run = runner(url)
    run.configure({"split": {"ppo": 1, "sac": 1}})
    traffic(run, np.random.default_rng(0), 2_000, {"ppo": 0.0, "sac": 0.001})
    run.set_split({"ppo": 0.7, "sac": 0.3}, "operator")
    before = run.summary()
    assert before["arms"]["ppo"]["requests"] + before["arms"]["sac"]["requests"] == 2_000

    again = runner(url)  # the store restarted: nothing but the log
    routing = again.configure({"split": {"ppo": 1, "sac": 1}})  # the ingress's unchanged user_config
    after = again.summary()
    assert routing.version == run.version and routing.layout == run.layout.as_json()
    assert after["arms"] == before["arms"]
    assert after["sample_ratio"]["observed"] == before["sample_ratio"]["observed"]
    assert after["comparisons"][0]["mean_difference"] == pytest.approx(before["comparisons"][0]["mean_difference"])
    assert again.experiment.shares == pytest.approx({"ppo": 0.7, "sac": 0.3})  # the operator's split stands


def test_a_deploy_that_changes_the_split_wins_over_the_operators_and_moves_only_the_clients_it_must(tmp_path):
    run = runner(f"sqlite:///{tmp_path / 'log.db'}")
    run.configure({"split": {"ppo": 0.9, "sac": 0.1}})
    run.set_split({"ppo": 0.5, "sac": 0.5}, "operator")
    layout = run.layout
    run.configure({"split": {"ppo": 0.8, "sac": 0.2}})
    assert run.experiment.shares == pytest.approx({"ppo": 0.8, "sac": 0.2})
    assert layout.moved_fraction(run.layout) == pytest.approx(0.3)
    kinds = [(d["kind"], d["source"]) for d in run.log.decisions()]
    assert kinds == [("start", "deploy"), ("split", "admin"), ("deploy", "deploy")]


def test_a_ramp_steps_up_on_evidence_and_a_rebuild_keeps_the_step(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    settings = {
        "experiment": {
            "control": "equal_weight",
            "challengers": ["ppo"],
            "routing": "ramp",
            "ramp": {"steps": [0.1, 0.5, 1.0], "min_feedback": 50},
        }
    }
    run = runner(url)
    run.configure(settings)
    rng = np.random.default_rng(1)
    for chunk in range(6):
        traffic(run, rng, 300, {"equal_weight": 0.0, "ppo": 0.0}, start=chunk * 300)
        run.poll()
    ramps = [d for d in run.log.decisions() if d["kind"] == "ramp"]
    assert [d["shares"]["ppo"] for d in ramps][:2] == pytest.approx([0.5, 1.0])
    assert all(d["source"] == "engine" and "not worse" in d["reason"] for d in ramps)
    again = runner(url)
    again.configure(settings)
    assert again.experiment.step_index == run.experiment.step_index
    assert again.summary()["arms"] == run.summary()["arms"]


def test_a_deploy_after_a_rollback_keeps_the_arm_out_and_says_so(tmp_path):
    run = runner(f"sqlite:///{tmp_path / 'log.db'}")
    run.configure({"split": {"ppo": 1, "sac": 1, "equal_weight": 1}})
    run.rollback("sac", "guardrail")
    run.configure({"split": {"ppo": 1, "sac": 2, "equal_weight": 1}, "shadow": "growth_optimal"})
    assert run.experiment.shares == pytest.approx({"equal_weight": 0.75, "ppo": 0.25, "sac": 0.0})
    assert run.shadow == "growth_optimal"
    last = run.log.decisions()[-1]
    assert last["source"] == "deploy" and "rolled-back ['sac'] keep no share" in last["reason"]


def test_admin_refusals_name_the_field(tmp_path):
    run = runner(f"sqlite:///{tmp_path / 'log.db'}")
    run.configure({"split": {"ppo": 1, "sac": 1}})
    with pytest.raises(ConfigError, match="split: unknown arm"):
        run.set_split({"zzz": 1.0}, "x")
    with pytest.raises(ConfigError, match="routing: the experiment routes by 'fixed'"):
        run.ramp("sac", 1, "x")
    run.rollback("sac", "operator saw enough")
    with pytest.raises(ConfigError, match="arm: 'sac' was rolled back"):
        run.promote("sac", "x")
    with pytest.raises(ConfigError, match="split: unknown agent"):
        run.configure({"split": {"nobody": 1}})
    with pytest.raises(ConfigError, match="shadow: unknown agent"):
        run.configure({"shadow": "nobody"})
    with pytest.raises(ConfigError, match="user_config"):
        run.configure({"splitt": {"ppo": 1}})


def test_served_and_offline_statistics_are_the_moments_and_the_sequence_of_what_was_sent(tmp_path):
    """The store's ``/ab/stats`` and ``evaluation.ab`` over an export both give, for what the test sent, each arm's
    count and mean and the normal-mixture confidence sequence of the difference (GrowthBook's closed form, computed
    here from the raw returns, not by the engine)."""
    from evaluation.ab import ab_statistics, read_export
    from experiments.log_export import export

    run = runner(f"sqlite:///{tmp_path / 'log.db'}")
    run.configure({"split": {"ppo": 1, "sac": 1}})
    rng = np.random.default_rng(2)
    sent = traffic(run, rng, 600, {"ppo": 0.0, "sac": 0.002})
    run.set_split({"ppo": 0.8, "sac": 0.2}, "operator")
    sent += traffic(run, rng, 600, {"ppo": 0.0, "sac": 0.002}, start=600)
    served = run.summary()
    export(run.log, tmp_path / "ab.parquet")
    offline = ab_statistics(read_export(tmp_path / "ab.parquet"), "ppo")

    returns = {arm: np.array([r for a, r in sent if a == arm]) for arm in ("ppo", "sac")}
    n = {arm: len(r) for arm, r in returns.items()}
    difference = returns["sac"].mean() - returns["ppo"].mean()
    variance = sum(r.var(ddof=1) / len(r) for r in returns.values())
    alpha, tuning_n, total = 0.05, 5_000, n["ppo"] + n["sac"]
    rho2 = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tuning_n
    s2 = variance * total
    half = np.sqrt(s2 * 2 * (total * rho2 + 1) / (total**2 * rho2) * np.log(np.sqrt(total * rho2 + 1) / alpha))
    for stats in (served, offline):
        for arm in ("ppo", "sac"):
            assert stats["arms"][arm]["requests"] == stats["arms"][arm]["feedback"] == n[arm]
            assert stats["arms"][arm]["mean_return"] == pytest.approx(returns[arm].mean(), rel=1e-12)
        sequence = stats["comparisons"][0]["sequential"]
        assert stats["comparisons"][0]["mean_difference"] == pytest.approx(difference, rel=1e-9)
        assert (sequence["lower"], sequence["upper"]) == pytest.approx((difference - half, difference + half), rel=1e-9)
    assert offline["arms"]["ppo"]["latency_ms"] == served["arms"]["ppo"]["latency_ms"]
    assert offline["comparisons"][0]["verdict"] == served["comparisons"][0]["verdict"]

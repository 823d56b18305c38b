"""Full information: every arm scored on every request, compared paired and by trading day; hedge routing; the
backtest-consistency guardrail. Pure Python over numbers (no Ray, no HTTP)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from core.errors import ConfigError
from experiments.config import ExperimentConfig
from experiments.consistency import ConsistencyTest, Expectation
from experiments.experiment import Experiment
from experiments.hedge import hedge_shares
from experiments.paired import DailyBook, days_to_verdict


def day(i: int) -> str:
    return (dt.date(2026, 1, 1) + dt.timedelta(days=i)).isoformat()


def play(
    experiment: Experiment,
    days: int,
    edges: dict[str, float],
    *,
    clients: int = 3,
    spread: float = 0.0005,
    seed: int = 0,
    market_vol: float = 0.02,
) -> None:
    """``days`` trading days; on each, ``clients`` requests share the day's market move; each arm earns the market
    plus its edge plus its own daily noise (``spread``), and a little per-client noise."""
    rng = np.random.default_rng(seed)
    for i in range(days):
        market = market_vol * rng.standard_normal()
        own = {arm: edge + spread * rng.standard_normal() for arm, edge in edges.items()}
        for _ in range(clients):
            noise = 1e-5 * rng.standard_normal()
            experiment.observe(day(i), {arm: market + own[arm] + noise for arm in edges})


def test_a_day_is_one_sample_however_many_clients_it_served_and_only_closed_days_count():
    book = DailyBook([("b", "a")])
    for growth in ({"a": 0.01, "b": 0.02}, {"a": 0.03, "b": 0.02}):
        book.add(day(0), growth)
    book.add(day(1), {"a": 0.0, "b": 0.0})
    assert book.closed_days() == [day(0)]  # day 1 is open: its mean can still move
    assert book.differences("b", "a").tolist() == pytest.approx([0.0])
    assert book.means("a").tolist() == pytest.approx([0.02])
    assert book.requests == 3


def test_paired_statistics_call_a_winner_that_unpaired_market_noise_hides():
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",)))
    play(experiment, 120, {"a": 0.0, "b": 0.0005})  # +5 bp/day, 2% market moves
    paired = experiment.summary()["paired"][0]
    assert paired["days"] == 119
    assert paired["sequential"]["lower"] > 0
    assert paired["variance_ratio"] < 0.01  # the market move cancels in the pair
    assert "grows faster" in paired["verdict"]
    assert experiment.evidence("b") == paired  # the decisions read the paired test once per-asset feedback came


def test_paired_sequence_is_not_read_before_min_days_and_forecasts_the_days_it_needs():
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",), min_days=20))
    play(experiment, 15, {"a": 0.0, "b": 0.002})
    paired = experiment.summary()["paired"][0]
    assert paired["sequential"]["lower"] == -np.inf and paired["sequential"]["p_value"] == 1.0
    assert "read from day 20" in paired["verdict"]
    assert days_to_verdict(0.0005, 0.001, 0.05, 250) > days_to_verdict(0.001, 0.001, 0.05, 250)
    assert days_to_verdict(0.0, 0.001, 0.05, 250) is None


def test_a_challenger_worse_by_the_paired_test_is_rolled_back():
    experiment = Experiment(ExperimentConfig(control="a", challengers=("b",)))
    play(experiment, 80, {"a": 0.0, "b": -0.001})
    made = experiment.decide()
    assert [(d.kind, d.arm) for d in made] == [("rollback", "b")]
    assert "grows slower" in made[0].reason


def test_hedge_moves_traffic_to_the_arm_with_more_net_log_wealth_without_exploring():
    config = ExperimentConfig(control="a", challengers=("b",), routing="hedge", hedge={"daily_range": 0.02})
    experiment = Experiment(config)
    assert experiment.shares == {"a": 0.5, "b": 0.5}
    play(experiment, 250, {"a": 0.0, "b": 0.001}, spread=0.0001)
    made = experiment.decide()
    assert made[-1].kind == "hedge"
    assert experiment.shares["b"] > 0.8  # +25 bp of log wealth over 249 days at a 2% daily range
    assert hedge_shares({"a": 0.0, "b": 10.0}, 100, 0.1, floor=0.1)["a"] == pytest.approx(0.1, abs=1e-3)


def test_hedge_needs_two_arms_and_room_for_its_floor():
    with pytest.raises(ValueError, match="routing: hedge needs at least two arms"):
        ExperimentConfig(control="a", routing="hedge")
    with pytest.raises(ValueError, match="hedge.floor"):
        ExperimentConfig(control="a", challengers=("b", "c"), routing="hedge", hedge={"floor": 0.4})


EXPECTED = {
    "a": Expectation(baseline="ew", mean=0.0, std=0.0, days=250),
    "b": Expectation(baseline="ew", mean=0.0002, std=0.002, days=250),
}


def consistency_config(**extra) -> ExperimentConfig:
    return ExperimentConfig(control="a", challengers=("b",), guardrails={"consistency": True}, **extra)


def test_the_consistency_guardrail_needs_every_arms_validation_distribution():
    with pytest.raises(ConfigError, match=r"guardrails.consistency: no validation distribution stored for \['b'\]"):
        Experiment(consistency_config(), expectations={"a": EXPECTED["a"]})


def test_an_arm_behaving_as_validation_said_is_not_flagged():
    rng = np.random.default_rng(3)
    flagged = 0
    for _ in range(200):
        test = ConsistencyTest(EXPECTED["b"], alpha=0.05)
        for x in 0.0002 + 0.002 * rng.standard_normal(250):
            test.update(float(x))
        flagged += test.flagged
    assert flagged / 200 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 200)


def test_an_arm_whose_live_spread_to_the_baseline_is_not_its_validation_one_is_rolled_back_within_60_days():
    experiment = Experiment(consistency_config(), expectations=EXPECTED)
    rng = np.random.default_rng(1)
    for i in range(61):  # a broken agent: three times the tracking spread validation measured
        market = 0.02 * rng.standard_normal()
        experiment.observe(day(i), {"a": market, "ew": market, "b": market + 0.006 * rng.standard_normal()})
    reading = experiment.summary()["consistency"]["b"]
    assert reading["flagged"] and reading["days"] == 60
    made = experiment.decide()
    assert [(d.kind, d.arm) for d in made] == [("rollback", "b")]
    assert "inconsistent with its validation" in made[0].reason
    assert experiment.summary()["consistency"]["a"]["reading"] == "not testable: identical to its baseline"


def test_the_spread_band_validation_saw_keeps_a_calm_regime_consistent_and_flags_a_spread_below_it():
    """Validation's 20-day windows ranged 0.5%-4.4% a day: a live stretch at 0.9% (a calm regime) is consistent, one
    at 0.3% (an agent holding other assets than it learnt on) is not, within 60 days."""
    expected = Expectation(baseline="ew", mean=5.4e-4, std=0.027, days=92_500, std_low=0.0048, std_high=0.044)
    rng = np.random.default_rng(5)
    calm, broken = ConsistencyTest(expected), ConsistencyTest(expected)
    for _ in range(250):
        calm.update(float(rng.normal(-1e-4, 0.009)))
    for _ in range(60):
        broken.update(float(rng.normal(-2e-4, 0.0030)))
    assert not calm.flagged and calm.summary()["validation_std_band"] == [0.0048, 0.044]
    assert broken.flagged and broken.flagged_on_day <= 60

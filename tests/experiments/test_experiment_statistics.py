"""The A/B experiment's statistics, without Serve: the confidence sequence, sticky buckets, the bandit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import ConfigError
from experiments.bandit import ArmReturns, thompson_shares
from experiments.buckets import BucketLayout, unit_point
from experiments.sequential import RunningPValue, confidence_sequence, mixture_rho_squared


def arm_stats(values):
    values = np.asarray(values, dtype=float)
    return ArmReturns(len(values), float(values.mean()), float(values.var(ddof=1)) if len(values) > 1 else 0.0)


# -- the confidence sequence ------------------------------------------------------------------------------------


def test_growthbooks_tuning_and_half_width():
    """rho^2 = (-2 ln a + ln(-2 ln a + 1)) / N*, and the half-width formula, at a = 0.05, N* = 5000, n = 1000."""
    alpha, tuning = 0.05, 5000
    rho2 = mixture_rho_squared(alpha, tuning)
    assert rho2 == pytest.approx((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    n, s = 1000, 2.0
    result = confidence_sequence(0.1, s * s / n, n, alpha, tuning)
    half = s * math.sqrt(2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))
    assert result.upper - result.difference == pytest.approx(half)
    assert result.difference - result.lower == pytest.approx(half)


def test_the_p_value_is_the_level_at_which_the_sequence_touches_zero():
    """With rho kept at the design alpha's, the sequence at level p has its lower end at 0."""
    d, variance, n = 0.5, 0.01, 400  # five standard errors
    result = confidence_sequence(d, variance, n, 0.05)
    rho2, s2 = mixture_rho_squared(0.05), variance * n
    half_at_p = math.sqrt(s2 * 2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / result.p_value))
    assert 0 < result.p_value < 0.05
    assert d - half_at_p == pytest.approx(0.0, abs=1e-9)
    assert confidence_sequence(0.0, 0.01, 400, 0.05).p_value == 1.0


def test_wider_than_a_fixed_horizon_interval_at_every_n():
    for n in (10, 100, 1_000, 10_000, 100_000):
        fixed = 1.96 * math.sqrt(1.0 / n)
        result = confidence_sequence(0.0, 1.0 / n, n, 0.05)
        assert result.upper > fixed


def test_no_observations_or_bad_alpha():
    empty = confidence_sequence(0.0, float("nan"), 0, 0.05)
    assert empty.p_value == 1.0 and math.isinf(empty.lower)
    with pytest.raises(ConfigError, match="alpha"):
        confidence_sequence(0.0, 1.0, 10, 1.5)


def test_running_p_value_never_rises():
    running = RunningPValue()
    assert [running.update(p) for p in (0.5, 0.2, 0.7, 0.1, 0.3)] == [0.5, 0.2, 0.2, 0.1, 0.1]


def test_peeking_after_every_20_feedbacks_keeps_false_positives_below_alpha():
    """200 A/A experiments of 1,000 returns per arm, looked at every 20 (the benchmark runs 2,000)."""
    rng = np.random.default_rng(0)
    looks = np.arange(20, 1001, 20)
    returns = rng.normal(0.0, 0.01, size=(200, 2, 1000))
    sums, squares = returns.cumsum(axis=2)[..., looks - 1], (returns**2).cumsum(axis=2)[..., looks - 1]
    means = sums / looks
    variances = (squares - looks * means**2) / (looks - 1)
    rejected = 0
    for e in range(200):
        for j, n in enumerate(looks):
            r = confidence_sequence(
                means[e, 1, j] - means[e, 0, j], (variances[e, 0, j] + variances[e, 1, j]) / n, 2 * n, 0.05
            )
            if r.lower > 0 or r.upper < 0:
                rejected += 1
                break
    assert rejected / 200 <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 200)


# -- sticky buckets ---------------------------------------------------------------------------------------------


def test_a_client_keeps_its_arm_while_the_split_is_unchanged():
    layout = BucketLayout.initial({"ppo": 0.5, "sac": 0.5})
    arms = {c: layout.arm(unit_point("exp", c)) for c in map(str, range(200))}
    assert arms == {c: layout.arm(unit_point("exp", c)) for c in map(str, range(200))}
    assert set(arms.values()) == {"ppo", "sac"}


def test_ramping_from_10_to_20_percent_moves_about_10_percent_of_clients():
    before = BucketLayout.initial({"control": 0.9, "challenger": 0.1})
    after = before.resized({"control": 0.8, "challenger": 0.2})
    assert after.shares() == pytest.approx({"control": 0.8, "challenger": 0.2})
    assert before.moved_fraction(after) == pytest.approx(0.1)
    clients = [str(i) for i in range(20_000)]
    moved = sum(before.arm(unit_point("e", c)) != after.arm(unit_point("e", c)) for c in clients) / len(clients)
    assert moved == pytest.approx(0.1, abs=0.01)
    # and every client that moved went to the challenger
    assert all(
        after.arm(unit_point("e", c)) == "challenger" for c in clients if before.arm(unit_point("e", c)) == "challenger"
    )


def test_a_ramp_in_steps_moves_only_the_total_variation_each_time():
    layout = BucketLayout.initial({"a": 0.5, "b": 0.3, "c": 0.2})
    for shares in ({"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 0.4, "b": 0.1, "c": 0.5}, {"a": 1.0, "b": 0.0, "c": 0.0}):
        new = layout.resized(shares)
        tv = 0.5 * sum(abs(layout.shares().get(k, 0) - v) for k, v in shares.items())
        assert layout.moved_fraction(new) == pytest.approx(tv, abs=1e-9)
        assert new.shares() == pytest.approx(shares)
        layout = BucketLayout.from_json(new.as_json())


def test_bad_shares_are_refused():
    with pytest.raises(ConfigError, match="shares"):
        BucketLayout.initial({"a": -1.0, "b": 2.0})
    with pytest.raises(ConfigError, match="shares"):
        BucketLayout.initial({})


# -- the bandit -------------------------------------------------------------------------------------------------


def test_equal_shares_before_feedback_and_the_floor_after():
    assert thompson_shares({"a": ArmReturns(0, 0, 0), "b": ArmReturns(0, 0, 0)}) == {"a": 0.5, "b": 0.5}
    rng = np.random.default_rng(0)
    strong = {"a": arm_stats(rng.normal(0.01, 0.01, 500)), "b": arm_stats(rng.normal(-0.01, 0.01, 500))}
    shares = thompson_shares(strong, min_share=0.1, rng=rng)
    assert shares["b"] == pytest.approx(0.1) and shares["a"] == pytest.approx(0.9)


def test_the_bandit_converges_to_the_better_arm_on_signed_returns():
    """A simulated stream: the better arm earns 5 bp a day more, returns are signed and noisy (1% a day)."""
    rng = np.random.default_rng(1)
    truth = {"control": 0.0, "challenger": 0.0005, "worse": -0.0005}
    returns: dict[str, list[float]] = {name: [] for name in truth}
    shares = {name: 1 / 3 for name in truth}
    for _ in range(60):  # 60 rounds of 500 feedbacks, shares recomputed after each
        names = list(truth)
        chosen = rng.choice(names, size=500, p=[shares[n] for n in names])
        for name in names:
            k = int((chosen == name).sum())
            returns[name].extend(rng.normal(truth[name], 0.01, k))
        shares = thompson_shares({n: arm_stats(r) for n, r in returns.items()}, min_share=0.05, rng=rng)
    assert shares["challenger"] > 0.8
    assert shares["worse"] == pytest.approx(0.05, abs=0.02)


def test_min_share_that_cannot_fit_is_refused():
    with pytest.raises(ConfigError, match="min_share"):
        thompson_shares({"a": ArmReturns(1, 0, 0), "b": ArmReturns(1, 0, 0), "c": ArmReturns(1, 0, 0)}, min_share=0.4)


# -- sample-ratio mismatch --------------------------------------------------------------------------------------


def test_sample_ratio_mismatch_flags_broken_assignment_only():
    from experiments.srm import sample_ratio_test

    fine = sample_ratio_test({"a": 5_030, "b": 4_970}, {"a": 5_000, "b": 5_000})
    assert not fine.mismatch and fine.p_value > 0.1
    broken = sample_ratio_test({"a": 5_300, "b": 4_700}, {"a": 5_000, "b": 5_000})
    assert broken.mismatch and broken.p_value < 1e-6
    # a ramp: expected counts follow the shares at each assignment
    ramped = sample_ratio_test({"a": 9_000 + 5_000, "b": 1_000 + 5_000}, {"a": 9_000 + 5_000, "b": 1_000 + 5_000})
    assert not ramped.mismatch
    assert not sample_ratio_test({"a": 10}, {"a": 10, "b": 0}).mismatch  # one arm: nothing to compare

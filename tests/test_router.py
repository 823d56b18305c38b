"""serving.router: weighted split, stickiness, override, validation of splits, statistics and the significance test."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.errors import ConfigError
from serving.router import ABRouter, ABStats, StatsBuffer, TrafficSplit, UnknownAgent, compare

KNOWN = {"ppo", "sac", "dqn", "equal_weight"}


def router(weights, shadow=None, seed=0):
    return ABRouter(TrafficSplit.create(weights, KNOWN, shadow), KNOWN, random.Random(seed))


def test_split_ratio_matches_weights_within_statistical_tolerance():
    r = router({"ppo": 0.7, "sac": 0.3})
    n = 5000
    share = sum(r.choose() == "ppo" for _ in range(n)) / n
    assert abs(share - 0.7) < 4 * np.sqrt(0.7 * 0.3 / n)


def test_client_ids_spread_by_weight_and_stick_while_the_split_is_unchanged():
    r = router({"ppo": 0.25, "sac": 0.75})
    clients = [f"client-{i}" for i in range(4000)]
    first = {c: r.choose(client_id=c) for c in clients}
    assert all(r.choose(client_id=c) == first[c] for c in clients)
    share = sum(a == "ppo" for a in first.values()) / len(clients)
    assert abs(share - 0.25) < 4 * np.sqrt(0.25 * 0.75 / len(clients))


def test_a_new_split_reshuffles_assignments():
    before = router({"ppo": 0.5, "sac": 0.5})
    after = router({"ppo": 0.5, "sac": 0.5, "dqn": 1e-9})
    moved = sum(before.choose(client_id=str(i)) != after.choose(client_id=str(i)) for i in range(500))
    assert moved > 100


def test_override_wins_and_unknown_override_is_refused():
    r = router({"ppo": 1.0})
    assert r.choose(client_id="x", override="sac") == "sac"
    with pytest.raises(UnknownAgent):
        r.choose(override="td3")


@pytest.mark.parametrize(
    "weights, shadow, message",
    [
        ({}, None, "at least one"),
        ({"td3": 1.0}, None, "unknown agent"),
        ({"ppo": -1.0, "sac": 2.0}, None, "non-negative"),
        ({"ppo": float("nan")}, None, "non-negative"),
        ({"ppo": 1.0}, "td3", "shadow"),
    ],
)
def test_invalid_splits_are_config_errors(weights, shadow, message):
    with pytest.raises(ConfigError, match=message):
        TrafficSplit.create(weights, KNOWN, shadow)


def test_zero_weight_arms_never_receive_traffic():
    r = router({"ppo": 1.0, "sac": 0.0})
    assert {r.choose() for _ in range(200)} == {"ppo"}


def test_feedback_is_attributed_to_the_arm_that_served_the_request():
    stats = ABStats()
    stats.record("ppo", "r1", 3.0)
    stats.record("sac", "r2", 4.0)
    assert stats.feedback("r2", 0.01) == "sac"
    with pytest.raises(KeyError):
        stats.feedback("nope", 0.01)
    with pytest.raises(KeyError):  # a retried report must not count twice in the t-test
        stats.feedback("r2", 0.01)
    summary = stats.summary()
    assert summary["arms"]["sac"]["feedback"] == 1 and summary["arms"]["ppo"]["feedback"] == 0
    assert summary["arms"]["ppo"]["latency_ms"]["p50"] == 3.0


def test_buffered_records_reach_the_shared_stats_once_and_survive_a_failed_hand_over():
    buffer, stats = StatsBuffer(), ABStats()
    assert buffer.take() is None
    buffer.record("ppo", "r1", 3.0)
    buffer.record("sac", "r2", 5.0, fallback=True)
    buffer.record_error("sac")
    failed = buffer.take()
    assert buffer.take() is None
    buffer.record("ppo", "r3", 4.0)
    buffer.record_shadow("dqn", 2.0)
    buffer.put_back(failed)  # the store did not answer: the records wait for the next hand-over
    stats.ingest(*buffer.take())
    assert buffer.take() is None
    arms = stats.summary()["arms"]
    assert (arms["ppo"]["requests"], arms["sac"]["requests"], arms["sac"]["fallbacks"], arms["sac"]["errors"]) == (
        2,
        1,
        1,
        1,
    )
    assert arms["dqn"]["shadow_requests"] == 1 and arms["ppo"]["latency_ms"]["p50"] == 3.5
    assert stats.feedback("r2", 0.01) == "sac" and stats.feedback("r3", 0.0) == "ppo"


def test_request_memory_is_bounded():
    stats = ABStats(memory=10)
    for i in range(20):
        stats.record("ppo", f"r{i}", 1.0)
    with pytest.raises(KeyError):
        stats.feedback("r0", 0.0)
    assert stats.feedback("r19", 0.0) == "ppo"


def test_welch_test_finds_a_real_difference_and_not_a_spurious_one():
    rng = np.random.default_rng(0)
    better = compare("a", rng.normal(0.002, 0.01, 2000), "b", rng.normal(0.0, 0.01, 2000))
    assert better["p_value"] < 0.01 and better["verdict"].startswith("a earns more")
    same = compare("a", rng.normal(0.0, 0.01, 200), "b", rng.normal(0.0, 0.01, 200))
    assert same["p_value"] > 0.01 and same["verdict"].startswith("no significant difference")


def test_summary_compares_every_pair_of_arms_with_feedback():
    stats = ABStats()
    rng = np.random.default_rng(1)
    for i in range(30):
        for arm in ("ppo", "sac", "dqn"):
            stats.record(arm, f"{arm}{i}", 1.0)
            stats.feedback(f"{arm}{i}", float(rng.normal()))
    pairs = {(c["a"], c["b"]) for c in stats.summary()["comparisons"]}
    assert pairs == {("dqn", "ppo"), ("dqn", "sac"), ("ppo", "sac")}

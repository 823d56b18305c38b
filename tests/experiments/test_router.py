"""experiments.router: routing by the experiment's bucket layout: shares, stickiness, ramps that move few clients,
the X-Agent override."""

from __future__ import annotations

import random

import numpy as np
import pytest

from experiments.buckets import BucketLayout
from experiments.router import Router, UnknownAgent

KNOWN = {"ppo", "sac", "equal_weight"}


def router(shares: dict[str, float], layout: BucketLayout | None = None, key: str = "exp-1") -> Router:
    layout = layout or BucketLayout.initial(shares)
    routing = {"experiment": key, "version": 1, "layout": layout.as_json(), "shadow": None}
    return Router(routing, KNOWN, rng=random.Random(0))


def test_random_requests_follow_the_shares_within_statistical_tolerance():
    r = router({"ppo": 0.7, "sac": 0.3})
    n = 20_000
    share = sum(r.choose().arm == "ppo" for _ in range(n)) / n
    assert abs(share - 0.7) < 4 * np.sqrt(0.21 / n)


def test_client_ids_spread_by_share_and_stick():
    r = router({"ppo": 0.5, "sac": 0.5})
    first = {f"c{i}": r.choose(f"c{i}").arm for i in range(4_000)}
    assert abs(sum(a == "ppo" for a in first.values()) / 4_000 - 0.5) < 0.04
    assert all(r.choose(c).arm == a for c, a in first.items())


def test_ramping_a_challenger_from_10_to_20_percent_moves_about_10_percent_of_clients():
    before = BucketLayout.initial({"equal_weight": 0.9, "ppo": 0.1})
    after = before.resized({"equal_weight": 0.8, "ppo": 0.2})
    a, b = router({}, before), router({}, after)
    clients = [f"client-{i}" for i in range(20_000)]
    moved = sum(a.choose(c).arm != b.choose(c).arm for c in clients) / len(clients)
    assert moved == pytest.approx(0.1, abs=0.01)
    assert all(b.choose(c).arm == "ppo" for c in clients if a.choose(c).arm == "ppo")  # nobody leaves the growing arm


def test_another_experiment_reshuffles_clients():
    a, b = router({"ppo": 0.5, "sac": 0.5}, key="exp-1"), router({"ppo": 0.5, "sac": 0.5}, key="exp-2")
    clients = [f"c{i}" for i in range(4_000)]
    assert 0.4 < sum(a.choose(c).arm != b.choose(c).arm for c in clients) / len(clients) < 0.6


def test_the_override_wins_is_marked_forced_and_an_unknown_one_is_refused():
    r = router({"ppo": 1.0})
    assert r.choose("alice", "equal_weight").arm == "equal_weight" and r.choose("alice", "equal_weight").forced
    assert not r.choose("alice").forced
    with pytest.raises(UnknownAgent):
        r.choose(None, "td3")


def test_arms_without_a_share_never_receive_traffic():
    r = router({"ppo": 1.0, "sac": 0.0})
    assert {r.choose(f"c{i}").arm for i in range(2_000)} | {r.choose().arm for _ in range(2_000)} == {"ppo"}
    assert r.by_share() == ["ppo"]

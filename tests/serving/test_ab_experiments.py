"""A/B experiments over real HTTP: the admin API under traffic, bad admin input and the experiment's Prometheus
gauges (test_ab_durability kills the app's parts under traffic). Starts and stops its own Ray and Serve."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import numpy as np
import pytest

from tests.support.serving import ADMIN, TOKEN, ab_app, body, traffic

pytestmark = pytest.mark.ray


def arm_of(layout: dict[str, list[list[float]]], experiment: str, client: str) -> str:
    """The arm whose ranges of [0, 1) hold the client's point, computed here from the documented contract."""
    point = int.from_bytes(hashlib.sha256(f"{experiment}:{client}".encode()).digest()[:8], "big") / 2.0**64
    return next(arm for arm, ranges in layout.items() for low, high in ranges if low <= point < high)


@pytest.fixture(scope="module")
def served(ray_local, models, monkeypatch_module, tmp_path_factory):
    """The app with a token and its own SQLite log; ``(base URL, log URL, redeploy)``."""
    monkeypatch_module.setenv("SERVE_API_TOKEN", TOKEN)
    with ab_app(models, f"sqlite:///{tmp_path_factory.mktemp('ab') / 'experiments.db'}") as app:
        yield app


def test_an_admin_split_under_traffic_applies_live_fails_nothing_and_moves_only_the_clients_it_must(served, tiny):
    base, log_url, _ = served
    before = httpx.get(f"{base}/ab/experiment", headers=ADMIN).json()
    changed = {}

    async def change(http: httpx.AsyncClient) -> None:
        reply = await http.put("/ab/split", json={"shares": {"ppo": 0.2, "dqn": 0.8}, "reason": "test"}, headers=ADMIN)
        changed.update(reply.json(), status=reply.status_code)

    result = asyncio.run(traffic(base, tiny, 300, prefix="split", during=change))
    assert result["failures"] == [] and len(result["acknowledged"]) == 300
    assert changed["status"] == 200, changed
    assert changed["shares"] == pytest.approx({"dqn": 0.8, "ppo": 0.2})
    after = httpx.get(f"{base}/ab/experiment", headers=ADMIN).json()
    assert after["decisions"][-1]["source"] == "admin" and after["decisions"][-1]["reason"] == "test"
    # 50/50 -> 20/80 moves the total-variation share of clients, 0.3, and no more: counted over many client ids,
    # each placed by the documented hash (SHA-256 of "experiment:client", first 8 bytes) in the layouts' ranges.
    clients = [f"client-{i}" for i in range(20_000)]
    moved = [
        arm_of(before["layout"], after["experiment"], c) != arm_of(after["layout"], after["experiment"], c)
        for c in clients
    ]
    assert np.mean(moved) == pytest.approx(0.3, abs=4 * np.sqrt(0.3 * 0.7 / len(clients)))
    # A client keeps its arm unless its point moved: fresh clients are routed by the new layout on both replicas once
    # the other replica has asked the store for the split (every 0.25 s; a loaded machine can take a few periods).
    expected = {f"sticky-{i}": arm_of(after["layout"], after["experiment"], f"sticky-{i}") for i in range(60)}
    deadline = time.monotonic() + 15
    with httpx.Client(base_url=base, timeout=30, headers=ADMIN) as http:
        while True:
            answered = {c: http.post("/allocate", json=body(tiny, client_id=c)).json()["agent"] for c in expected}
            if answered == expected or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    assert answered == expected


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "field"),
    [
        ("put", "/ab/split", {"shares": {"zzz": 1.0}}, 422, "shares"),
        ("put", "/ab/split", {"shares": {"ppo": -1.0}}, 422, "shares"),
        ("put", "/ab/split", {"shares": {}}, 422, "shares"),
        ("put", "/ab/split", {"shares": {"ppo": 1.0}, "extra": 1}, 422, "extra"),
        ("post", "/ab/promote", {"arm": "zzz"}, 422, "arm"),
        ("post", "/ab/rollback", {"arm": "equal_weight"}, 422, "arm"),
        ("post", "/ab/ramp", {"arm": "dqn", "step": 1}, 409, "routing"),
        ("post", "/ab/ramp", {"arm": "dqn"}, 422, "step"),
    ],
)
def test_bad_admin_requests_get_a_4xx_naming_the_field(served, method, path, payload, status, field):
    base, _, _ = served
    reply = getattr(httpx, method)(f"{base}{path}", json=payload, headers=ADMIN)
    assert reply.status_code == status, reply.text
    assert field in str(reply.json()["detail"])


def test_the_sample_ratio_test_and_the_shares_are_prometheus_gauges(served):
    base, _, _ = served
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = httpx.get(f"{base}/metrics", headers=ADMIN, timeout=30).text
        if "rlportfolio_ab_srm_p_value" in text and "rlportfolio_ab_share" in text:
            break
        time.sleep(2)
    else:
        pytest.fail(f"the A/B gauges never showed: {text[:500]}")
    assert "rlportfolio_ab_srm_mismatch" in text

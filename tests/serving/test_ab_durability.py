"""The A/B app's durable log under failure, on SQLite (the default) and on a real PostgreSQL server (a cluster's
choice): nothing acknowledged is lost when the experiment store and an ingress replica are killed under traffic, and
a whole-app redeploy under traffic rebuilds the same statistics and keeps the admin's split. Starts and stops its own
Ray, Serve and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from experiments.log_store import ExperimentLog
from tests.support import postgres
from tests.support.serving import ADMIN, TOKEN, ab_app, logged, traffic

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request, ray_local, models, monkeypatch_module, tmp_path_factory):
    """The app with a token and its log in a fresh database; ``(base URL, log URL, redeploy)``."""
    if request.param == "sqlite":
        log_url = f"sqlite:///{tmp_path_factory.mktemp('ab') / 'experiments.db'}"
    else:
        log_url = postgres.new_database(request.getfixturevalue("postgres_server"))
    monkeypatch_module.setenv("SERVE_API_TOKEN", TOKEN)
    with ab_app(models, log_url) as app:
        yield app


def routed_answers(log_url: str) -> list[dict]:
    return [r for r in ExperimentLog(log_url).read().assignments if r["kind"] == "answer" and not r["forced"]]


def stats_once_answering(base: str, timeout_s: float = 120.0) -> dict:
    """``/ab/stats`` once the app answers it again (a restarted store rebuilds its statistics from the log first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            reply = httpx.get(f"{base}/ab/stats", headers=ADMIN, timeout=30)
            if reply.status_code == 200:
                return reply.json()
        except httpx.HTTPError:  # the ingress waits for the restarting store
            pass
        assert time.monotonic() < deadline, "/ab/stats did not answer again"
        time.sleep(1)


def test_nothing_acknowledged_is_lost_when_the_store_and_an_ingress_replica_are_killed_under_traffic(served, tiny):
    import ray

    base, log_url, _ = served

    def actor(word: str):
        found = next(a for a in ray.util.list_named_actors(all_namespaces=True) if word in a["name"])
        return ray.get_actor(found["name"], namespace=found["namespace"])

    async def kill(http: httpx.AsyncClient) -> None:
        for word in ("StatsStore", "Ingress"):
            ray.kill(actor(word), no_restart=False)
            await asyncio.sleep(0.3)

    result = asyncio.run(traffic(base, tiny, 400, prefix="kill", during=kill))
    answered, feedback = logged(log_url)
    assert set(result["acknowledged"]) <= answered, "an acknowledged answer is missing from the log"
    assert result["fed"] <= feedback, "an acknowledged feedback is missing from the log"
    assert len(result["acknowledged"]) >= 200, result["failures"][:10]

    arms = stats_once_answering(base)["arms"]
    assert sum(a["requests"] for a in arms.values()) == len(routed_answers(log_url))
    assert sum(a["feedback"] for a in arms.values()) == len(feedback)


def test_a_whole_app_redeploy_under_traffic_loses_nothing_and_keeps_the_admins_split(served, tiny):
    base, log_url, redeploy = served
    split = httpx.put(f"{base}/ab/split", json={"shares": {"ppo": 0.3, "dqn": 0.7}}, headers=ADMIN, timeout=30)
    assert split.status_code == 200, split.text
    asyncio.run(traffic(base, tiny, 60, prefix="before-redeploy"))
    before = stats_once_answering(base)

    async def redeploy_now(http: httpx.AsyncClient) -> None:
        await asyncio.to_thread(redeploy)

    result = asyncio.run(traffic(base, tiny, 300, prefix="redeploy", during=redeploy_now))
    answered, feedback = logged(log_url)
    assert set(result["acknowledged"]) <= answered and result["fed"] <= feedback
    assert len(result["acknowledged"]) >= 100, result["failures"][:10]

    after = stats_once_answering(base)
    assert after["experiment"] == before["experiment"]  # the same settings: the same experiment, rebuilt
    assert (
        after["split"] == pytest.approx({"ppo": 0.3, "dqn": 0.7}) and after["split_version"] == before["split_version"]
    )
    assert sum(a["requests"] for a in after["arms"].values()) == len(routed_answers(log_url))
    assert sum(a["feedback"] for a in after["arms"].values()) == len(feedback)
    assert sum(a["feedback"] for a in after["arms"].values()) > sum(a["feedback"] for a in before["arms"].values())

"""Two ingress replicas behind one port: A/B statistics and feedback see all traffic, whichever replica serves it.
Starts and stops its own Serve."""

from __future__ import annotations

import httpx
import pytest

from tests.support.serving import ab_app, allocate_many, body

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def app(ray_local, models, monkeypatch_module, tmp_path_factory):
    monkeypatch_module.delenv("SERVE_API_TOKEN", raising=False)
    log_url = f"sqlite:///{tmp_path_factory.mktemp('ab') / 'experiments.db'}"
    with ab_app(models, log_url, name="rlportfolio") as (base, _, _):
        yield base


def test_stats_and_feedback_span_ingress_replicas(app, tiny):
    from ray import serve

    assert serve.status().applications["rlportfolio"].deployments["Ingress"].replica_states == {"RUNNING": 2}
    answers = allocate_many(app, [body(tiny, client_id=f"c{i}") for i in range(300)], concurrency=16)
    assert all(a.status_code == 200 for a in answers)
    with httpx.Client(base_url=app, timeout=30) as client:
        for answer in answers:  # a fresh connection each: feedback lands on either replica
            fed = httpx.post(
                f"{app}/feedback", json={"request_id": answer.json()["request_id"], "realized_return": 0.001}
            )
            assert fed.status_code == 200, fed.text
        arms = client.get("/ab/stats").json()["arms"]  # both replicas write the log the store reads
    assert sum(arm["requests"] for arm in arms.values()) == 300
    assert sum(arm["feedback"] for arm in arms.values()) == 300

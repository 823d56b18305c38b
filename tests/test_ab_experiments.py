"""A/B experiments over real HTTP: the admin API under traffic, bad admin input, and the durable log through kills of
the experiment store, of an ingress replica and of the whole app, counting every acknowledged answer and feedback.
Starts and stops its own Ray and Serve."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from serving.buckets import BucketLayout, unit_point
from serving.experiment_log import ExperimentLog
from tests.conftest import body, free_port

pytestmark = pytest.mark.ray

TOKEN = "admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(ray_local, models, monkeypatch_module, tmp_path_factory):
    """The app with a token and its own log; ``(base URL, log URL, deploy)`` where ``deploy()`` (re)deploys it."""
    from ray import serve

    from serving.builder import build_app

    monkeypatch_module.setenv("SERVE_API_TOKEN", TOKEN)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    log_url = f"sqlite:///{tmp_path_factory.mktemp('ab') / 'experiments.db'}"
    args = {
        "models_dir": str(models),
        "split": {"ppo": 0.5, "dqn": 0.5},
        "baselines": ["equal_weight"],
        "ingress_replicas": 2,
        "experiment_log": log_url,
    }

    def deploy() -> None:
        serve.run(build_app(args), name="ab", route_prefix="/")

    deploy()
    yield f"http://127.0.0.1:{port}", log_url, deploy
    serve.shutdown()


async def traffic(base: str, tiny, n: int, *, prefix: str, during=None, concurrency: int = 8) -> dict:
    """``n`` allocate-then-feedback rounds from distinct clients, ``concurrency`` at a time, with ``during()``
    awaited once a third are sent. Every acknowledged request id and feedback, and every failure."""
    acknowledged, fed, failures = {}, set(), []
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int, http: httpx.AsyncClient) -> None:
        async with limit:
            try:
                answer = await http.post("/allocate", json=body(tiny, client_id=f"{prefix}-{i}"), headers=ADMIN)
            except httpx.HTTPError as exc:
                failures.append(f"allocate: {type(exc).__name__}")
                return
            if answer.status_code != 200:
                failures.append(f"allocate: {answer.status_code}")
                return
            request_id = answer.json()["request_id"]
            acknowledged[request_id] = answer.json()["agent"]
            try:
                reply = await http.post(
                    "/feedback", json={"request_id": request_id, "realized_return": 0.001}, headers=ADMIN
                )
            except httpx.HTTPError as exc:
                failures.append(f"feedback: {type(exc).__name__}")
                return
            if reply.status_code == 200:
                fed.add(request_id)
            else:
                failures.append(f"feedback: {reply.status_code}")

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        tasks = [asyncio.create_task(one(i, http)) for i in range(n)]
        if during is not None:
            while len(acknowledged) < n // 3:
                await asyncio.sleep(0.02)
            await during(http)
        await asyncio.gather(*tasks)
    return {"acknowledged": acknowledged, "fed": fed, "failures": failures}


def logged(log_url: str) -> tuple[set[str], set[str]]:
    contents = ExperimentLog(log_url).read()
    answered = {r["request_id"] for r in contents.assignments if r["kind"] == "answer" and r["arm"]}
    return answered, {r["request_id"] for r in contents.feedback}


def test_an_admin_split_under_traffic_applies_live_fails_nothing_and_moves_only_the_clients_it_must(served, tiny):
    base, log_url, _ = served
    before = httpx.get(f"{base}/ab/experiment", headers=ADMIN).json()
    old_layout = BucketLayout.from_json(before["layout"])
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
    new_layout = BucketLayout.from_json(after["layout"])
    assert old_layout.moved_fraction(new_layout) == pytest.approx(0.3)
    # A client keeps its arm unless its point moved: 300 fresh clients routed by the new layout, on both replicas.
    time.sleep(0.6)  # the other ingress replica asks the store for the split every 0.25 s
    clients = [f"sticky-{i}" for i in range(60)]
    with httpx.Client(base_url=base, timeout=30, headers=ADMIN) as http:
        for client_id in clients:
            agent = http.post("/allocate", json=body(tiny, client_id=client_id)).json()["agent"]
            assert agent == new_layout.arm(unit_point(after["experiment"], client_id))


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


def test_nothing_acknowledged_is_lost_when_the_store_and_an_ingress_replica_are_killed_under_traffic(served, tiny):
    import ray

    base, log_url, _ = served

    def actors(word: str) -> list:
        return [a for a in ray.util.list_named_actors(all_namespaces=True) if word in a["name"]]

    async def kill(http: httpx.AsyncClient) -> None:
        for name in (actors("StatsStore")[0], actors("Ingress")[0]):
            ray.kill(ray.get_actor(name["name"], namespace=name["namespace"]), no_restart=False)
            await asyncio.sleep(0.3)

    result = asyncio.run(traffic(base, tiny, 400, prefix="kill", during=kill))
    print(
        f"killed: {len(result['acknowledged'])} answers and {len(result['fed'])} feedbacks acknowledged, "
        f"{len(result['failures'])} failed ({sorted(set(result['failures']))})"
    )
    answered, feedback = logged(log_url)
    assert set(result["acknowledged"]) <= answered, "an acknowledged answer is missing from the log"
    assert result["fed"] <= feedback, "an acknowledged feedback is missing from the log"
    assert len(result["acknowledged"]) >= 200, result["failures"][:10]

    deadline = time.monotonic() + 120  # the store restarts and rebuilds its statistics from the log
    while time.monotonic() < deadline:
        try:
            stats = httpx.get(f"{base}/ab/stats", headers=ADMIN, timeout=30)
            if stats.status_code == 200:
                break
        except httpx.HTTPError:  # the ingress waits for the restarting store
            pass
        time.sleep(1)
    arms = stats.json()["arms"]
    routed = [r for r in ExperimentLog(log_url).read().assignments if r["kind"] == "answer" and not r["forced"]]
    assert sum(a["requests"] for a in arms.values()) == len(routed)
    assert sum(a["feedback"] for a in arms.values()) == len(feedback)


def test_a_whole_app_redeploy_rebuilds_the_same_statistics_and_keeps_the_admins_split(served, tiny):
    from ray import serve

    base, log_url, deploy = served
    asyncio.run(traffic(base, tiny, 60, prefix="redeploy"))
    before = httpx.get(f"{base}/ab/stats", headers=ADMIN).json()
    serve.delete("ab")
    deploy()
    after = httpx.get(f"{base}/ab/stats", headers=ADMIN).json()
    assert after["arms"] == before["arms"] and after["split"] == before["split"]
    assert after["split_version"] == before["split_version"]


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

"""Bearer-token auth of the Serve app over HTTP: every endpoint but /health needs the token when it is set."""

from __future__ import annotations

import httpx
import pytest

from tests.support.paths import free_port
from tests.support.serving import body

pytestmark = pytest.mark.ray

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured(ray_local, models, monkeypatch_module, tmp_path_factory):  # noqa: F811
    from ray import serve

    from serving.builder import build_app

    monkeypatch_module.setenv("SERVE_API_TOKEN", TOKEN)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    log_url = f"sqlite:///{tmp_path_factory.mktemp('ab') / 'experiments.db'}"
    serve.run(build_app({"models_dir": str(models), "experiment_log": log_url}), name="secured", route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    serve.shutdown()


def test_health_is_open(secured):
    assert secured.get("/health").status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}]
)
def test_every_other_endpoint_needs_the_right_bearer_token(secured, tiny, headers):
    assert secured.get("/agents", headers=headers).status_code == 401
    assert secured.post("/allocate", json=body(tiny), headers=headers).status_code == 401
    assert secured.get("/ab/stats", headers=headers).status_code == 401
    assert secured.get("/metrics", headers=headers).status_code == 401
    assert secured.get("/ab/experiment", headers=headers).status_code == 401
    assert secured.put("/ab/split", json={"shares": {"ppo": 1.0}}, headers=headers).status_code == 401
    assert (
        secured.post("/feedback", json={"request_id": "x", "realized_return": 0.0}, headers=headers).status_code == 401
    )
    # A malformed body says nothing to a caller without the token: 401 before 422.
    assert secured.post("/allocate", json={"prices": "bad"}, headers=headers).status_code == 401
    assert secured.post("/feedback", json={"asset_returns": []}, headers=headers).status_code == 401
    assert secured.put("/ab/split", json={"shares": "x"}, headers=headers).status_code == 401


def test_the_right_token_is_accepted(secured, tiny):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert secured.get("/agents", headers=headers).status_code == 200
    answer = secured.post("/allocate", json=body(tiny), headers=headers)
    assert answer.status_code == 200 and sum(answer.json()["weights"].values()) == pytest.approx(1.0)

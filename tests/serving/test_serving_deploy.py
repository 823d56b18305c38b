"""The production path: `serve deploy` of a config file to a running head, then a live split change by
redeploying a new Ingress user_config under traffic: no restart, no failed request. Starts and stops its own head."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.paths import REPO_ROOT, free_port
from tests.support.serving import body

pytestmark = pytest.mark.ray

SERVE = str(Path(sys.executable).parent / "serve")


def write_config(path: Path, models_dir: Path, port: int, split: dict) -> Path:
    config = yaml.safe_load((REPO_ROOT / "configs" / "serve.yaml").read_text())
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["args"]["models_dir"] = str(models_dir)
    app["args"]["experiment_log"] = f"sqlite:///{path.parent / 'experiments.db'}"
    app["deployments"][0]["user_config"]["split"] = split
    path.write_text(yaml.safe_dump(config))
    return path


def deploy(head_url: str, config: Path, timeout_s: float = 90.0) -> None:
    """`serve deploy`, retried while the freshly started head's agent is not up yet."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run(
            [SERVE, "deploy", str(config), "--address", head_url], env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, done.stderr[-2000:]
        time.sleep(2)


def wait_for(url: str, check, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5)
            if check(response):
                return response
        except httpx.HTTPError:
            pass
        time.sleep(1)
    pytest.fail(f"{url} never reached the expected state")


def test_split_changes_live_via_serve_deploy_without_restart_or_failed_requests(head, models, tiny, tmp_path):  # noqa: F811
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    deploy(head, write_config(tmp_path / "serve.yaml", models, port, {"ppo": 0.5, "dqn": 0.5}))
    wait_for(f"{base}/health", lambda r: r.status_code == 200)
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(20):
            assert client.post("/allocate", json=body(tiny, client_id=f"c{i}")).status_code == 200
        before = client.get("/ab/stats").json()
    assert before["split"] == {"dqn": 0.5, "ppo": 0.5}
    assert sum(arm["requests"] for arm in before["arms"].values()) == 20

    async def traffic(stop: asyncio.Event) -> list[int]:
        codes = []
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while not stop.is_set():
                codes.append((await http.post("/allocate", json=body(tiny))).status_code)
        return codes

    async def redeploy_under_traffic() -> list[int]:
        stop = asyncio.Event()
        task = asyncio.create_task(traffic(stop))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(
            deploy, head, write_config(tmp_path / "serve2.yaml", models, port, {"dqn": 1.0, "ppo": 0.0})
        )
        await asyncio.to_thread(wait_for, f"{base}/ab/stats", lambda r: r.json()["split"] == {"dqn": 1.0}, 60)
        await asyncio.sleep(1.0)
        stop.set()
        return await task

    codes = asyncio.run(redeploy_under_traffic())
    assert len(codes) > 20 and set(codes) == {200}
    with httpx.Client(base_url=base, timeout=30) as client:
        after = client.get("/ab/stats").json()
        # Every answered request is in the experiment's log, before and during the change.
        assert sum(arm["requests"] for arm in after["arms"].values()) == 20 + len(codes)
        assert after["split_version"] == before["split_version"] + 1
        agents = {client.post("/allocate", json=body(tiny)).json()["agent"] for _ in range(30)}
    assert agents == {"dqn"}

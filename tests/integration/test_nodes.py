"""A real two-node Ray cluster on localhost (``ray start --head`` and ``ray start --address``, one CPU each) with its
storage on a real S3 API (moto's server): a sweep submitted with ``python -m training.submit`` runs trials on both
nodes and finishes after the worker node is killed mid-sweep; the Serve app, deployed with ``python -m
serving.deploy`` from the models in S3, keeps answering every request while the worker node that holds agent
replicas is killed under traffic.

A node is killed the way a spot instance goes: its raylet and every process under it get SIGKILL, with no warning.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import yaml

from core.storage import Location
from tests.support.agents import export_untrained
from tests.support.clusters import RAY, stop_cluster, trial_statuses, wait_for_job_agent
from tests.support.paths import REPO_ROOT, free_port
from tests.support.s3 import s3_keys
from tests.support.serving import body

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


class Cluster(NamedTuple):
    dashboard: str  # http://127.0.0.1:PORT, for jobs and Serve deploys
    env: dict[str, str]
    head_id: str
    worker_id: str
    worker_raylet_port: int


def node_ids(dashboard: str) -> dict[str, str]:
    """``{"head" | "worker": node id}`` of the live nodes, told apart by the custom resource each was started with."""
    from ray.util.state import list_nodes

    found = {}
    for node in list_nodes(address=dashboard, filters=[("state", "=", "ALIVE")]):
        for role in ("head", "worker"):
            if f"{role}_node" in node.resources_total:
                found[role] = node.node_id
    return found


@pytest.fixture
def cluster(s3, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {
        "RAY_AUTH_MODE": "disabled",
        **s3.env,
        "RLPORTFOLIO_CACHE": str(tmp_path / "model-cache"),
        "TUNE_GLOBAL_CHECKPOINT_S": "1",  # experiment snapshots every second: what this test reads is current
    }
    port, dashboard, raylet = free_port(), free_port(), free_port()
    started = subprocess.run(
        [
            RAY, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
            "--include-dashboard=true", "--num-cpus=1", "--resources", '{"head_node": 1}', "--disable-usage-stats",
        ],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
    url = f"http://127.0.0.1:{dashboard}"
    # A node of its own disk, as on a cloud (a shared /tmp/ray would let one node's runtime-env agent replace the
    # working directory another node's job runs in); short, for Unix socket paths.
    worker_tmp = tempfile.mkdtemp(prefix="rw", dir="/tmp")
    try:
        # A second node on the same machine needs ports of its own (the defaults are the head's).
        joined = subprocess.run(
            [
                RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--resources", '{"worker_node": 1}',
                f"--temp-dir={worker_tmp}",
                f"--node-manager-port={raylet}", f"--object-manager-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                "--disable-usage-stats",
            ],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert joined.returncode == 0, joined.stderr[-2000:]
        wait_for_job_agent(url)
        deadline = time.monotonic() + 60
        while len(ids := node_ids(url)) < 2:
            assert time.monotonic() < deadline, f"the worker node did not join: {ids}"
            time.sleep(1)
        yield Cluster(url, env, ids["head"], ids["worker"], raylet)
    finally:
        stop_cluster(url, env)
        shutil.rmtree(worker_tmp, ignore_errors=True)


def kill_node(raylet_port: int) -> int:
    """SIGKILL the raylet serving ``raylet_port`` and every process under it; how many processes were killed."""
    parents, commands = {}, {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            commands[int(proc.name)] = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    flag = f"--node_manager_port={raylet_port}".encode()
    raylets = [pid for pid, argv in commands.items() if argv[0].endswith(b"raylet") and flag in argv]
    assert len(raylets) == 1, f"no single raylet on port {raylet_port}: {raylets}"
    doomed, frontier = set(raylets), list(raylets)
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in doomed]
        doomed.update(children)
        frontier = children
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(doomed)


# -- a sweep across both nodes ----------------------------------------------------------------------------------------


def trial_results(experiment: Location) -> dict[str, list[dict]]:
    """Each trial's result rows (``result.json``)."""
    rows = {}
    for trial in experiment.children():
        if (trial / "result.json").is_file():
            rows[trial.name] = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    return rows


def test_a_sweep_submitted_to_two_nodes_runs_on_both_and_finishes_after_losing_the_worker_node(
    cluster, s3, tiny_csv, tmp_path
):
    from tests.support.sweeps import write_sweep

    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 4000}, num_samples=4, concurrent=2)
    raw = yaml.safe_load(config.read_text())
    raw["storage_path"], raw["models_dir"] = s3.uri("cluster-sweeps"), s3.uri("cluster-models")
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    experiment = Location.of(s3.uri("cluster-sweeps", "t", "ppo"))
    log = (tmp_path / "submit.log").open("w")
    submit = subprocess.Popen(
        [sys.executable, "-m", "training.submit", "--address", cluster.dashboard, "--config", str(config)]
        # --shared-filesystem: the sweep YAML lives in this test's folder, at one path for both nodes of this machine
        + ["--name", "t", "--python", sys.executable, "--shared-filesystem"],
        cwd=REPO_ROOT,
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # Kill the worker node once a trial has finished and another is running there with a checkpoint or two and
        # iterations still to go (results reach the bucket with a snapshot, up to a second late).
        deadline = time.monotonic() + 400
        while True:
            assert submit.poll() is None, (tmp_path / "submit.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sweep made no progress on the worker node within 400 s"
            statuses, results = trial_statuses(experiment), trial_results(experiment)
            on_worker = [
                name
                for name, rows in results.items()
                if statuses.get(name) == "RUNNING" and 2 <= len(rows) <= 5 and rows[-1]["node_id"] == cluster.worker_id
            ]
            if "TERMINATED" in statuses.values() and on_worker:
                break
            time.sleep(0.5)
        killed_at = time.monotonic()
        assert kill_node(cluster.worker_raylet_port) >= 2
        finished_before = {name: len(results[name]) for name, s in statuses.items() if s == "TERMINATED"}
        assert submit.wait(timeout=600) == 0, (tmp_path / "submit.log").read_text()[-3000:]
    finally:
        if submit.poll() is None:
            submit.kill()
        log.close()
    output = (tmp_path / "submit.log").read_text()
    after, results = trial_statuses(experiment), trial_results(experiment)

    assert len(after) == 4 and set(after.values()) == {"TERMINATED"}, after
    assert all(rows[-1]["num_env_steps_sampled_lifetime"] >= 4000 for rows in results.values())
    ran_on = {row["node_id"] for rows in results.values() for row in rows}
    assert ran_on == {cluster.head_id, cluster.worker_id}  # trials ran on both nodes
    for name, n in finished_before.items():
        assert len(results[name]) == n, f"finished trial {name} was rerun"
    # The interrupted trial went on from its checkpoint on the surviving node, to its last iteration.
    resumed = [
        name
        for name, rows in results.items()
        if name in on_worker and rows[-1]["node_id"] == cluster.head_id and rows[0]["node_id"] == cluster.worker_id
    ]
    assert resumed, {name: [row["node_id"][:6] for row in results[name]] for name in on_worker}
    for name in resumed:
        iterations = [row["training_iteration"] for row in results[name]]
        assert iterations[0] == 1 and iterations[-1] == 8 and len(set(iterations)) == 8

    models = s3.uri("cluster-models")
    assert "sweep-t succeeded" in output and "retrying from its last checkpoint (failure 1 of 1 allowed)" in output
    assert f"ppo: {models}/ppo" in output and "serve them: python -m serving.deploy" in output
    assert {"cluster-models/ppo/metadata.json", "cluster-models/registry.json"} <= set(s3_keys(s3, "cluster-models/"))
    summary = json.loads(Location.of(s3.uri("cluster-sweeps", "t", "summary.json")).read_text())
    assert summary["complete"] and summary["algos"]["ppo"]["n_trials"] == 4
    print(f"sweep finished {time.monotonic() - killed_at:.0f} s after the worker node was killed")


# -- serving across both nodes --------------------------------------------------------------------------------------


def test_serving_from_s3_on_two_nodes_loses_no_request_when_the_worker_node_dies(
    cluster, s3, tiny, small_config, tmp_path
):
    from envs.portfolio_env import PortfolioEnv

    models = s3.uri(f"served-{tmp_path.name}")
    env = PortfolioEnv(small_config.model_copy(update={"continuous_map": "softmax_delta"}), market=tiny.market)
    export_untrained(env, "ppo", tmp_path, models)
    serve_config, on_head = tmp_path / "serve.yaml", {"head_node": 0.01}
    serve_config.write_text(
        yaml.safe_dump(
            {
                # The HTTP proxy, ingress and A/B store on the head (on a cloud, the on-demand node); agent replicas
                # spread over both nodes, so the worker node's loss takes some of them.
                "proxy_location": "HeadOnly",
                "http_options": {"host": "127.0.0.1", "port": (port := free_port())},
                "applications": [
                    {
                        "name": "rlportfolio",
                        "route_prefix": "/",
                        "import_path": "serving.app:build_app",
                        "args": {
                            "models_dir": "set by --models",
                            "baselines": ["equal_weight"],
                            "fallback": "equal_weight",
                            "agent_num_cpus": 0.25,
                            "experiment_log": f"sqlite:///{tmp_path / 'experiments.db'}",
                        },
                        "deployments": [
                            # ray_actor_options replace the code's, so the CPUs are restated
                            {"name": "Ingress", "ray_actor_options": {"num_cpus": 0.25, "resources": on_head}},
                            {"name": "StatsStore", "ray_actor_options": {"num_cpus": 0.05, "resources": on_head}},
                            {"name": "agent-ppo", "num_replicas": 2},
                        ],
                    }
                ],
            }
        )
    )
    deployed = subprocess.run(
        [sys.executable, "-m", "serving.deploy", "--address", cluster.dashboard, "--config", str(serve_config)]
        + ["--models", models],
        cwd=REPO_ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-3000:]
    url = f"http://127.0.0.1:{port}"
    assert f"serving at {url}" in deployed.stdout

    from ray.util.state import list_actors

    replicas = list_actors(
        address=cluster.dashboard, filters=[("class_name", "=", "ServeReplica:rlportfolio:agent-ppo")], limit=100
    )
    nodes = {a.node_id for a in replicas if a.state == "ALIVE"}
    assert nodes == {cluster.head_id, cluster.worker_id}, "agent replicas did not spread over both nodes"

    request = body(tiny, client_id=None)
    answers, failures, stop = [], [], threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/allocate", json=request, headers={"X-Agent": "ppo"})
                (answers if response.status_code == 200 else failures).append(response)

    workers = [threading.Thread(target=traffic) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(3)
        before = len(answers)
        kill_node(cluster.worker_raylet_port)
        time.sleep(20)  # through the node's death, its detection and the replicas' replacement
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert before > 0 and not failures, [f.text[:200] for f in failures[:3]]
    answered_by = {r.json()["agent"] for r in answers}
    assert answered_by <= {"ppo", "equal_weight"} and len(answers) > before + 20
    assert sum(1 for r in answers[before:] if r.json()["agent"] == "ppo") > 0  # the head's replicas kept serving
    fallbacks = sum(1 for r in answers if r.json()["fallback"])
    print(f"{len(answers)} answers ({len(answers) - before} after the kill, {fallbacks} by the fallback), 0 failed")

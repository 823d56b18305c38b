"""A Ray head started from the command line (`ray start --head`), as a user starts one, and Tune's trial states."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.paths import free_port

RAY = str(Path(sys.executable).parent / "ray")


@contextmanager
def ray_head(env: dict[str, str] | None = None, *, auth: bool = False) -> Iterator[str]:
    """A real local head (`ray start --head`, 2 CPUs, its own ports) whose job agent is ready; its dashboard URL.
    Token auth is off unless ``auth``; Serve and every Ray node on this machine are stopped afterwards."""
    env = {**os.environ, **(env or {})}
    if not auth:
        env["RAY_AUTH_MODE"] = "disabled"
    port, dashboard = free_port(), free_port()
    started = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            f"--dashboard-port={dashboard}",
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=true",
            f"--dashboard-agent-listen-port={free_port()}",  # not the default 52365: another head may hold it
            f"--ray-client-server-port={free_port()}",
            "--num-cpus=2",
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if started.returncode != 0:
        raise RuntimeError(f"ray start --head failed: {started.stderr[-2000:]}")
    url = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for_job_agent(url)
        yield url
    finally:
        stop_cluster(url, env)


def stop_cluster(url: str, env: dict) -> None:
    """Serve, then every Ray node on this machine. Serve first: in the high-throughput mode (inherited from the test
    session's environment) its HAProxy is a child process that `ray stop --force` would leave running, holding its
    ports."""
    subprocess.run(
        [str(Path(RAY).parent / "serve"), "shutdown", "-y", "--address", url], env=env, capture_output=True, timeout=120
    )
    subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def wait_for_job_agent(url: str, timeout_s: float = 90.0) -> None:
    """Right after `ray start` the head's job agent may answer "No available agent": wait until a job runs."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            job = client.submit_job(entrypoint="true")
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            raise TimeoutError("the head's first job did not finish")
        time.sleep(1)


def trial_statuses(experiment) -> dict[str, str]:
    """Each trial's status in Tune's newest experiment snapshot under ``experiment`` (a folder or a storage URI):
    what a resume, or a retry after a lost node, starts from."""
    from core.storage import Location

    snapshots = [c for c in Location.of(experiment).children() if c.name.startswith("experiment_state-")]
    if not snapshots:
        return {}
    try:
        state = json.loads(max(snapshots, key=lambda c: c.name).read_text())
    except (OSError, json.JSONDecodeError):  # caught mid-write; the next look sees it whole
        return {}
    trials = (json.loads(trial) for trial, _ in state["trial_data"])
    return {trial["relative_logdir"]: trial["status"] for trial in trials}

"""Ray Jobs: a real local head (`ray start --head`), a short training run submitted with the Jobs SDK and
`--working-dir`-style runtime env, and the exported policy it leaves behind. Starts and stops its own cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def head():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port, dashboard = free_port(), free_port()
    started = subprocess.run(
        [RAY, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
         "--include-dashboard=true", "--num-cpus=2", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    url = f"http://127.0.0.1:{dashboard}"
    try:
        yield url
    finally:
        # Serve first: in the high-throughput mode (inherited from the test session's environment) its HAProxy is a
        # child process that `ray stop --force` would leave running, holding its ports.
        subprocess.run([str(Path(RAY).parent / "serve"), "shutdown", "-y", "--address", url], env=env, capture_output=True, timeout=120)
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def submit_when_ready(client, entrypoint: str, runtime_env: dict, timeout_s: float = 90.0) -> str:
    """Submit once the head's job agent is up: right after `ray start` it may answer "No available agent"."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_training_job_submitted_to_a_head_exports_a_policy(head, tiny_csv, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(head)
    models = tmp_path / "models"
    entrypoint = (
        f"{sys.executable} -m training.train --algo ppo --timesteps 1000 --data {tiny_csv} "
        f"--runs-dir {tmp_path / 'runs'} --models-dir {models}"
    )
    runtime_env = {
        "working_dir": str(REPO_ROOT),
        "excludes": [".venv", ".git", "runs", "models", "data", "reports", ".hypothesis", "**/__pycache__"],
        "env_vars": {"RAY_AUTH_MODE": "disabled"},
    }
    job = submit_when_ready(client, entrypoint, runtime_env)
    deadline = time.monotonic() + 400
    status = client.get_job_status(job)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED} and time.monotonic() < deadline:
        time.sleep(2)
        status = client.get_job_status(job)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "iter    1" in logs
    assert (models / "ppo" / "metadata.json").is_file() and (models / "registry.json").is_file()

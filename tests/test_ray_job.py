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
        wait_for_job_agent(url)
        yield url
    finally:
        # Serve first: in the high-throughput mode (inherited from the test session's environment) its HAProxy is a
        # child process that `ray stop --force` would leave running, holding its ports.
        subprocess.run([str(Path(RAY).parent / "serve"), "shutdown", "-y", "--address", url], env=env, capture_output=True, timeout=120)
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
        assert time.monotonic() < deadline, "the head's first job did not finish"
        time.sleep(1)


README = (REPO_ROOT / "README.md").read_text()
JOIN = "RAY_ADDRESS=auto .venv/bin/python -m training.train --algo ppo --timesteps 50000"
SUBMIT = """RAY_ADDRESS=http://127.0.0.1:8265 .venv/bin/ray job submit --working-dir . \\
  --runtime-env-json '{"excludes": [".venv", "runs", "models", "data", "reports", ".git"]}' \\
  -- "$PWD/.venv/bin/python" -m training.train --algo ppo --timesteps 50000"""


def small_run(tiny_csv, folder: Path) -> str:
    return f"--timesteps 1000 --data {tiny_csv} --runs-dir {folder / 'runs'} --models-dir {folder / 'models'} --no-dashboard"


def test_the_readmes_cluster_commands_train_on_a_head_and_submit_a_job_to_it(head, tiny_csv, tmp_path):
    """The README's local-cluster commands as written (the head's own ports substituted): a run joined through the
    GCS address, a job through the dashboard's HTTP address; and the HTTP address refused where ray.init needs the GCS."""
    assert JOIN in README and SUBMIT in README
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_AUTH_MODE": "disabled"}

    joined = subprocess.run(["bash", "-c", f"{JOIN} {small_run(tiny_csv, tmp_path / 'joined')}"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=400)
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert "Ray: cluster at auto" in joined.stderr
    assert (tmp_path / "joined" / "models" / "ppo" / "metadata.json").is_file()

    submit = SUBMIT.replace("http://127.0.0.1:8265", head) + " " + small_run(tiny_csv, tmp_path / "job")
    job = subprocess.run(["bash", "-c", submit], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "iter   1" in job.stdout and "succeeded" in job.stdout
    assert (tmp_path / "job" / "models" / "ppo" / "metadata.json").is_file()
    assert (tmp_path / "job" / "models" / "registry.json").is_file()

    wrong = subprocess.run(["bash", "-c", f"RAY_ADDRESS={head} .venv/bin/python -m training.train --algo ppo"],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2
    assert f"error: RAY_ADDRESS={head} is a dashboard (Jobs API) address, for `ray job submit`" in wrong.stderr
    assert "Traceback" not in wrong.stderr

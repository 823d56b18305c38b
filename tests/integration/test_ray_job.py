"""A real local head (`ray start --head`, the `head` fixture): the README's cluster commands as written, a run that
joins it and a job submitted to it, and the exported policies they leave behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT
from tests.support.readme import JOIN, README, SUBMIT

pytestmark = [pytest.mark.ray, pytest.mark.cluster]


def small_run(tiny_csv, folder: Path) -> str:
    return f"--timesteps 1000 --data {tiny_csv} --runs-dir {folder / 'runs'} --models-dir {folder / 'models'} --no-dashboard"


def test_the_readmes_cluster_commands_train_on_a_head_and_submit_a_job_to_it(head, tiny_csv, tmp_path):
    """The README's local-cluster commands as written (the head's own ports substituted): a run joined through the
    GCS address, a job through the dashboard's HTTP address; and the HTTP address refused where ray.init needs the GCS."""
    assert JOIN in README and SUBMIT in README
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_AUTH_MODE": "disabled"}

    joined = subprocess.run(
        ["bash", "-c", f"{JOIN} {small_run(tiny_csv, tmp_path / 'joined')}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert "Ray: cluster at auto" in joined.stderr
    assert (tmp_path / "joined" / "models" / "ppo" / "metadata.json").is_file()

    submit = SUBMIT.replace("http://127.0.0.1:8265", head) + " " + small_run(tiny_csv, tmp_path / "job")
    job = subprocess.run(["bash", "-c", submit], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert "iter   1" in job.stdout and "succeeded" in job.stdout
    assert (tmp_path / "job" / "models" / "ppo" / "metadata.json").is_file()
    assert (tmp_path / "job" / "models" / "registry.json").is_file()

    wrong = subprocess.run(
        ["bash", "-c", f"RAY_ADDRESS={head} .venv/bin/python -m training.train --algo ppo"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2
    assert f"error: RAY_ADDRESS={head} is a dashboard (Jobs API) address, for `ray job submit`" in wrong.stderr
    assert "Traceback" not in wrong.stderr

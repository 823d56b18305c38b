"""benchmarks/gpu_smoke.py, the script a GPU node runs: its JSON and its refusal on a machine without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.ray

SCRIPT = str(REPO_ROOT / "benchmarks" / "gpu_smoke.py")


def test_without_a_gpu_it_refuses_and_says_what_to_do():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "run this on a GPU node" in done.stderr


def test_allow_cpu_reports_where_the_learners_ran_and_their_speed():
    done = subprocess.run(
        [sys.executable, SCRIPT, "--allow-cpu", "--seconds", "1", "--algos", "ppo"],  # one PPO iteration trains
        capture_output=True,
        text=True,
        timeout=300,
        env={"RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    ppo = out["algorithms"]["ppo"]
    assert ppo["learner_devices"] == ["cpu"] and ppo["env_steps_per_s"] > 0 and ppo["learner_updates_per_s"] > 0
    assert out["machine"]["gpu"] is None and out["allow_cpu"]

"""What a newcomer does between the README's commands, end to end with real processes: Ctrl-C in a sweep (SIGINT to
its process group, as a terminal sends it) and the ``--resume`` it prints, and the README's cluster block on a
machine where Ray's token file exists (as ``serve run`` leaves it), so ``ray start --head`` turns token auth on."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.clusters import trial_statuses
from tests.support.paths import REPO_ROOT, free_port
from tests.support.readme import README, SUBMIT, TOKEN_FILE, TOKEN_MODE
from tests.support.sweeps import write_sweep

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BIN = Path(sys.executable).parent
SAC_SPACE = {"actor_lr": {"loguniform": [1e-4, 1e-3]}}  # SAC refuses a plain lr


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short RAY_TMPDIR of the test's own (Ray's socket paths are limited to about 100 characters): the sessions
    and the ``ray_current_cluster`` file of this test's Ray instances, apart from any other Ray on the machine."""
    folder = Path(tempfile.mkdtemp(prefix="rlp-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def user_env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    """A shell as a user has it: the virtual environment's bin first on PATH, no RAY_* or MLFLOW_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "TUNE_"))}
    return {**env, "PATH": f"{BIN}:{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmp), **extra}


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def ctrl_c_when(process: subprocess.Popen, log: Path, pattern: str, timeout_s: float = 240) -> None:
    """SIGINT to the process group, as a terminal's Ctrl-C, once ``pattern`` shows in ``log``; then its end."""
    deadline = time.monotonic() + timeout_s
    try:
        while not (log.is_file() and re.search(pattern, log.read_text())):
            assert process.poll() is None, f"ended before {pattern!r}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout_s:.0f} s"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def summary(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "sweeps" / "t" / "summary.json").read_text())


def resume_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("finish it with: ")]
    return line.removeprefix("finish it with: ")


@pytest.mark.timeout(900)
def test_ctrl_c_mid_algorithm_exports_nothing_of_it_and_the_printed_resume_finishes_every_algorithm(
    tmp_path, tiny_csv, ray_tmp
):
    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000, "dqn": 20000, "sac": 400}, num_samples=1, concurrent=1)
    raw = yaml.safe_load(config.read_text())
    raw["algos"]["sac"]["search_space"] = SAC_SPACE
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    sweep = tmp_path / "sweeps" / "t"
    command = [str(BIN / "python"), "-m", "training.sweep", "--config", str(config), "--name", "t", "--no-dashboard"]
    first = start(command, user_env(ray_tmp), tmp_path / "first.log")
    # Every iteration reaches sweep.log (the console throttles them): DQN's second of twenty.
    ctrl_c_when(first, sweep / "sweep.log", r"dqn \w+ \(1/1\) iter +2 ")
    output = (tmp_path / "first.log").read_text()

    assert first.returncode == 130, output[-3000:]
    assert "Ctrl-C: stopping the sweep" in output
    assert "dqn: stopped before it finished; nothing of it was exported" in output
    assert "sac: not started" in output and f"ppo: done, exported to {tmp_path / 'models' / 'ppo'}" in output
    for noise in ("Traceback", "Tuner.restore", "Stop signal received", "KeyboardInterrupt"):
        assert noise not in output, noise
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["ppo", "registry.json"]
    stopped = summary(tmp_path)
    assert stopped["complete"] is False and set(stopped["algos"]) == {"ppo"}
    # DQN's trial stopped where it was, saved as unfinished for the resume (not TERMINATED in Tune's snapshot).
    assert set(trial_statuses(sweep / "dqn").values()) <= {"RUNNING", "PAUSED", "PENDING"}

    again = resume_line(output)
    assert again == f".venv/bin/python -m training.sweep --config {config} --resume t"
    done = subprocess.run(
        ["bash", "-c", f"{again} --no-dashboard"],
        cwd=REPO_ROOT,
        env=user_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ppo: finished earlier in this sweep; kept" in done.stderr
    finished = summary(tmp_path)
    assert finished["complete"] is True and set(finished["algos"]) == {"ppo", "dqn", "sac"}
    for algo in ("ppo", "dqn", "sac"):
        assert finished["exported"][algo] == str(tmp_path / "models" / algo)
        assert (tmp_path / "models" / algo / "metadata.json").is_file()
    dqn = json.loads((tmp_path / "models" / "dqn" / "metadata.json").read_text())
    assert dqn["training"]["env_steps"] >= 20000  # the whole budget: the trial went on from where it stopped
    assert set(trial_statuses(sweep / "dqn").values()) == {"TERMINATED"}


@pytest.mark.timeout(600)
def test_ctrl_c_before_the_first_result_is_one_clean_message_and_the_resume_it_prints_works(
    tmp_path, tiny_csv, ray_tmp
):
    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000}, num_samples=1, concurrent=1)
    # A cluster that `ray start` ran once and that is gone (no `ray stop`): a bare ray.init() would try to join it.
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    command = [str(BIN / "rlportfolio"), "sweep", "--config", str(config), "--name", "t", "--no-dashboard"]
    first = start(command, user_env(ray_tmp), tmp_path / "first.log")
    ctrl_c_when(first, tmp_path / "sweeps" / "t" / "sweep.log", r"ppo: 1 trial\(s\)")
    output = (tmp_path / "first.log").read_text()

    assert first.returncode == 130, output[-3000:]
    for noise in ("Traceback", "AttributeError", "Tuner.restore", "KeyboardInterrupt"):
        assert noise not in output, noise
    assert f"interrupted: sweep t in {tmp_path / 'sweeps' / 't'} is not complete" in output
    assert "ppo: stopped before it finished; nothing of it was exported" in output
    assert not (tmp_path / "models").exists()
    assert not (tmp_path / "sweeps" / "t" / "summary.json").exists() or summary(tmp_path)["complete"] is False
    again = resume_line(output)
    assert again == f"rlportfolio sweep --config {config} --resume t"

    done = subprocess.run(
        ["bash", "-c", f"{again} --no-dashboard"],
        cwd=REPO_ROOT,
        env=user_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary(tmp_path)["complete"] is True
    assert (tmp_path / "models" / "ppo" / "metadata.json").is_file()


# -- the README's cluster block where Ray's token file exists ---------------------------------------------------------


@contextmanager
def head_with_token(env: dict, log: Path) -> Iterator[tuple[str, str]]:
    """`ray start --head --block` as a user runs it (RAY_AUTH_MODE unset: Ray turns token auth on because
    ~/.ray/auth_token exists), on ports of its own; its GCS address and dashboard URL. Stopped by its own pid, so no
    other Ray on this machine is touched (`ray stop` would stop them all)."""
    port, dashboard = free_port(), free_port()
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        "--num-cpus=2",
        "--disable-usage-stats",
    ]
    head = start(command, env, log)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                mode = httpx.get(f"{url}/api/authentication_mode", timeout=5).json()["authentication_mode"]
                break
            except (httpx.HTTPError, ValueError, KeyError):
                assert head.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the head's dashboard did not answer"
                time.sleep(1)
        assert mode == "token", "the head did not turn token auth on"
        yield f"127.0.0.1:{port}", url
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        with suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # whatever is left of that node
        head.wait(timeout=30)


def run(command: str, env: dict, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for_job_agent(url: str, env: dict) -> None:
    code = f"from tests.support.clusters import wait_for_job_agent; wait_for_job_agent({url!r})"
    done = subprocess.run(
        [str(BIN / "python"), "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=200
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.cluster
@pytest.mark.timeout(900)
def test_the_cluster_block_works_where_rays_token_file_exists(tmp_path, tiny_csv, ray_tmp):
    assert TOKEN_FILE in README and TOKEN_MODE in README and SUBMIT in README  # the block this test runs
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(ray_tmp, HOME=str(home))
    made = run("ray get-auth-token --generate > /dev/null", env)  # what `serve run` leaves behind in ~/.ray
    assert made.returncode == 0 and (home / ".ray" / "auth_token").is_file(), made.stderr
    small = f"--timesteps 1000 --data {tiny_csv} --runs-dir {tmp_path / 'runs'} --no-dashboard"

    with head_with_token(env, tmp_path / "head.log") as (gcs, url):
        # The project's commands join in the cluster's mode, whatever RAY_AUTH_MODE says here (the Makefile's
        # `disabled`, or nothing: Ray never turns the token on itself for a host:port address).
        for address, mode in (("auto", "disabled"), (gcs, None)):
            joined = run(
                f"RAY_ADDRESS={address} rlportfolio train --algo ppo {small} --models-dir {tmp_path / address}",
                env | ({"RAY_AUTH_MODE": mode} if mode else {}),
            )
            assert joined.returncode == 0, joined.stderr[-3000:]
            assert f"Ray: cluster at {address}" in joined.stderr
            assert "InvalidAuthToken" not in joined.stderr and "Traceback" not in joined.stderr
            assert (tmp_path / address / "ppo" / "metadata.json").is_file()

        # Ray's own clients send the token under RAY_AUTH_MODE=token (what the README's block exports).
        token = env | {"RAY_AUTH_MODE": "token"}
        wait_for_job_agent(url, token)
        job = (
            f"RAY_ADDRESS={url} ray job submit --working-dir . --runtime-env-json "
            """'{"excludes": [".venv", "runs", "models", "data", "reports", ".git", "mlruns"]}' """
            f'-- "$PWD/.venv/bin/python" -m training.train --algo ppo {small}'
        )
        lost = run(job, token)  # models/ in the job's working directory, which Ray deletes afterwards
        assert lost.returncode != 0
        assert "error: --models-dir: models is relative, and this runs as a Ray job in" in lost.stdout + lost.stderr
        readme_job = SUBMIT.replace("http://127.0.0.1:8265", url).replace("--timesteps 50000", "")  # as written
        kept = run(f"{readme_job} {small} --models-dir {tmp_path / 'job-models'}", token)
        assert kept.returncode == 0, (kept.stdout + kept.stderr)[-3000:]
        assert "succeeded" in kept.stdout + kept.stderr
        assert (tmp_path / "job-models" / "ppo" / "metadata.json").is_file()

        # rlportfolio submit asks the dashboard and sends the token itself, with no RAY_AUTH_MODE in the shell.
        sweep = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000}, num_samples=1, concurrent=1)
        submitted = run(
            f"rlportfolio submit --address {url} --config {sweep} --name s --shared-filesystem "
            f"--python {BIN / 'python'}",
            env,
        )
        assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-3000:]
        assert f"ppo: {tmp_path / 'models' / 'ppo'}" in submitted.stdout
        assert (tmp_path / "models" / "ppo" / "metadata.json").is_file()

        stop = run(f"serve shutdown -y --address {url}", token)
        assert stop.returncode == 0 and "Unable to shutdown" not in stop.stdout + stop.stderr, stop.stderr

"""The README's main chain, run as a new user pastes it: ``rlportfolio data synth``, ``data validate``, ``train``,
``sweep`` (killed mid-way, then ``--resume``), ``report``, ``serve`` and the curl examples, then TensorBoard and the
MLflow UI on what the sweep wrote.

Every command is asserted to appear in README.md word for word, then run by bash from a fresh folder (holding only
the checkout's ``.venv`` and ``configs``), with small budgets and free ports appended. The steps share that folder,
in order, like a user's first hour.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.clusters import trial_statuses
from tests.support.paths import REPO_ROOT, free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]

README = (REPO_ROOT / "README.md").read_text()

SYNTH = ".venv/bin/rlportfolio data synth --out data/synthetic.csv --seed 7"
VALIDATE = ".venv/bin/rlportfolio data validate data/synthetic.csv"
TRAIN = ".venv/bin/rlportfolio train --algo ppo --timesteps 50000"
SWEEP = ".venv/bin/rlportfolio sweep --config configs/sweep.yaml"
RESUME = ".venv/bin/rlportfolio sweep --config configs/sweep.yaml --resume"
REPORT = ".venv/bin/rlportfolio report --models models/ --out reports/mine"
SERVE = ".venv/bin/rlportfolio serve --models models/ --split ppo=0.5,sac=0.5"
CURLS = [
    "curl -s localhost:8000/health",
    "curl -s localhost:8000/agents",
    "curl -s localhost:8000/allocate -H 'Content-Type: application/json' -d \"$(.venv/bin/rlportfolio request-body --models models/)\"",
    "curl -s localhost:8000/ab/stats",
]
TENSORBOARD = ".venv/bin/tensorboard --logdir runs/sweeps"
MLFLOW_UI = ".venv/bin/mlflow ui --backend-store-uri sqlite:///runs/mlflow.db"
SMALL_SWEEP = ("--timesteps", "2000", "--num-samples", "2")  # one PPO iteration (8,000 steps), two SAC/DQN ones


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A fresh folder with the checkout's virtual environment and configs, as a user's clone would have them."""
    folder = tmp_path_factory.mktemp("first-hour")
    (folder / ".venv").symlink_to(REPO_ROOT / ".venv")
    (folder / "configs").symlink_to(REPO_ROOT / "configs")
    return folder


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    return {**env, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def bash(home: Path, command: str, *extra: str, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", " ".join([command, *extra])],
        cwd=home,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def start(home: Path, command: str, *extra: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            ["bash", "-c", "exec " + " ".join([command, *extra])],
            cwd=home,
            env=user_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.wait(timeout=60)


def wait_for(predicate, what: str, timeout_s: float = 180.0, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def get_json(url: str, **params):
    try:
        answer = httpx.get(url, params=params, timeout=5)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def trial_results(home: Path, algo: str) -> dict[str, list[dict]]:
    """Result rows per trial folder of ``algo``'s Tune experiment in the (one) sweep under ``runs/sweeps``."""
    rows = {}
    for path in home.glob(f"runs/sweeps/*/{algo}/*/result.json"):
        rows[path.parent.name] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def ppo_statuses(home: Path) -> dict[str, str]:
    folders = list(home.glob("runs/sweeps/*/ppo"))
    return trial_statuses(folders[0]) if folders else {}


def test_every_command_of_the_chain_is_in_the_readme_as_written():
    for command in [SYNTH, VALIDATE, TRAIN, SWEEP, RESUME, REPORT, SERVE, *CURLS, TENSORBOARD, MLFLOW_UI]:
        assert command in README, command


def test_synth_then_validate_writes_and_accepts_the_builtin_market(home):
    assert bash(home, SYNTH).returncode == 0
    done = bash(home, VALIDATE)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == 6301 and set(summary["splits"]) == {"train", "validation", "test"}
    assert done.stderr == ""  # nothing but the JSON: no RuntimeWarning about envs.data, no library notices


def test_train_exports_an_agent_and_keeps_a_log(home):
    done = bash(home, TRAIN, "--timesteps", "2000", "--no-dashboard")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "models" / "ppo" / "metadata.json").is_file()
    assert "iter   1" in done.stderr and "Traceback" not in done.stderr
    assert "new API stack" not in done.stderr and "RLModule(config" not in done.stderr
    (log,) = home.glob("runs/ppo-*/train.log")
    assert "iter   1" in log.read_text()


def test_sweep_killed_during_its_first_algorithm_resumes_and_completes_all_three(home):
    first = start(home, SWEEP, *SMALL_SWEEP, log=home / "sweep-1.log")
    try:
        board = wait_for(
            lambda: re.search(r"dashboard (http://127\.0\.0\.1:\d+)", (home / "sweep-1.log").read_text()),
            "the dashboard's address",
        )
        assert get_json(f"{board.group(1)}/api/version")["ray_version"] == "2.60.0"
        wait_for(lambda: "TERMINATED" in ppo_statuses(home).values(), "a finished PPO trial", timeout_s=300)
    finally:
        stop(first)
        bash(home, ".venv/bin/ray stop --force", timeout=120)
    console = (home / "sweep-1.log").read_text()
    assert "== Status ==" not in console and "/tmp/ray" not in console.replace("Ray's own logs in /tmp/ray", "")
    before = trial_results(home, "ppo")
    (sweep,) = home.glob("runs/sweeps/demo-builtin-*")
    assert not (sweep / "summary.json").exists() or not json.loads((sweep / "summary.json").read_text())["complete"]
    # Finished as the snapshot a resume reads says (a trial with results may still be RUNNING there, and rerun).
    finished = {
        name: (sweep / "ppo" / name / "result.json").stat().st_mtime_ns
        for name, status in trial_statuses(sweep / "ppo").items()
        if status == "TERMINATED" and before.get(name)
    }
    assert finished

    done = bash(home, RESUME, "--no-dashboard", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["complete"] and set(summary["algos"]) == {"ppo", "sac", "dqn"}
    for algo in ("ppo", "sac", "dqn"):
        assert len(trial_results(home, algo)) == 2 and all(trial_results(home, algo).values()), algo
        assert summary["exported"][algo] == str(home / "models" / algo)
    for name, mtime in finished.items():
        assert (sweep / "ppo" / name / "result.json").stat().st_mtime_ns == mtime, f"finished trial {name} was rerun"
    assert (
        f"exported models: {home / 'models' / 'ppo'}" in done.stdout
        and f"sweep summary: {sweep / 'summary.json'}" in done.stdout
    )
    assert "Traceback" not in done.stderr and "== Status ==" not in done.stderr
    assert (sweep / "sweep.log").read_text().count(" iter ") >= 6


def test_report_covers_the_chains_agents_on_the_same_data(home):
    done = bash(home, REPORT, "--bootstrap", "200")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((home / "reports" / "mine" / "metrics.json").read_text())
    assert set(metrics["agents"]) == {"dqn", "ppo", "sac"}
    assert "equal_weight" in metrics["metrics"] and "oracle_constant_mix" in metrics["metrics"]


def test_serve_answers_the_curl_examples_and_stops_cleanly_on_sigterm(home):
    port, metrics_port = free_port(), free_port()
    server = start(
        home, SERVE, "--port", str(port), "--metrics-port", str(metrics_port), "--no-dashboard", log=home / "serve.log"
    )
    try:
        wait_for(lambda: get_json(f"http://127.0.0.1:{port}/health"), "the server's /health", timeout_s=180)
        health, agents, allocation, stats = (
            json.loads(bash(home, curl.replace("localhost:8000", f"localhost:{port}")).stdout) for curl in CURLS
        )
        assert health["status"] == "ok"
        assert {a["name"] for a in agents} == {"dqn", "ppo", "sac", "equal_weight", "growth_optimal"}
        assert allocation["agent"] in {"ppo", "sac"} and math.isclose(sum(allocation["weights"].values()), 1.0)
        assert stats["split"] == {"ppo": 0.5, "sac": 0.5} and allocation["agent"] in stats["arms"]
        stopped = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert time.monotonic() - stopped < 20
    finally:
        stop(server)
    console = (home / "serve.log").read_text()
    for noise in (
        "Traceback",
        "SIGTERM received",
        "(raylet)",
        "Connecting to existing Serve app",
        "failed to shut down",
    ):
        assert noise not in console, noise


def test_tensorboard_shows_the_sweeps_validation_curve(home):
    port = free_port()
    board = start(home, TENSORBOARD, "--port", str(port), "--host", "127.0.0.1", log=home / "tensorboard.log")
    tag = "ray/tune/validation/mean_daily_log_growth"
    try:
        tags = wait_for(
            lambda: {
                r: t
                for r, t in (get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/tags") or {}).items()
                if tag in t
            },
            "TensorBoard to load the event files",
            timeout_s=120,
        )
        run = next(r for r in tags if "/ppo/" in r)
        points = get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars", run=run, tag=tag)
    finally:
        stop(board)
    rows = trial_results(home, "ppo")[Path(run).name]
    assert points[0][2] == pytest.approx(rows[0]["validation"]["mean_daily_log_growth"], rel=1e-5)


def test_mlflow_ui_shows_every_trial_with_its_validation_metric(home):
    port = free_port()
    ui = start(home, MLFLOW_UI, "--port", str(port), "--host", "127.0.0.1", log=home / "mlflow.log")
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        experiment = wait_for(
            lambda: get_json(f"{api}/experiments/get-by-name", experiment_name="rlportfolio-sweeps"),
            "the MLflow UI",
            timeout_s=120,
        )["experiment"]
        runs = httpx.post(
            f"{api}/runs/search", json={"experiment_ids": [experiment["experiment_id"]], "max_results": 100}, timeout=10
        ).json()["runs"]
        ppo = [r for r in runs if {"key": "algo", "value": "ppo"} in r["data"]["tags"]]
        history = get_json(
            f"{api}/metrics/get-history", run_id=ppo[0]["info"]["run_id"], metric_key="validation/mean_daily_log_growth"
        )
    finally:
        stop(ui)
    assert len(runs) == 6 and len(ppo) == 2  # 2 configurations x 3 algorithms, each trial logged once (resumes too)
    trial = {t["key"]: t["value"] for t in ppo[0]["data"]["tags"]}["trial_id"]
    rows = next(rows for rows in trial_results(home, "ppo").values() if rows and rows[0]["trial_id"] == trial)
    assert history["metrics"][0]["value"] == pytest.approx(rows[0]["validation"]["mean_daily_log_growth"])

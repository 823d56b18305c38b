"""training.sweep end to end on a real local Ray (subprocesses): MLflow, TensorBoard, export, kill and --resume;
and without Ray, where MLflow's files go and what an interrupted Tune experiment summarises to."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.tracking import home_experiment, mlflow_uri
from tests.support.clusters import trial_statuses
from tests.support.paths import REPO_ROOT
from tests.support.sweeps import run_env, sweep_command, write_sweep


@pytest.mark.ray
def test_sweep_tracks_every_trial_and_exports_the_best_per_algorithm(tmp_path, tiny_csv):
    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000, "dqn": 400}, num_samples=1, concurrent=2, seeds=(0, 1))
    done = subprocess.run(
        sweep_command(config), cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((tmp_path / "sweeps" / "t" / "summary.json").read_text())
    for algo in ("ppo", "dqn"):
        result = summary["algos"][algo]
        assert result["n_trials"] == 2
        # One sampled configuration, repeated over two seeds: reported as one row with mean and spread.
        assert len(result["configurations"]) == 1 and result["configurations"][0]["seeds"] == 2
        assert result["configurations"][0]["validation_std"] is not None
        assert (tmp_path / "models" / algo / "metadata.json").is_file()
        meta = json.loads((tmp_path / "models" / algo / "metadata.json").read_text())
        assert meta["sweep"]["n_trials"] == 2
        assert meta["validation"]["mean_daily_log_growth"] == pytest.approx(result["best_trial"]["best_validation"])
    assert f"{summary['algos']['ppo']['configurations'][0]['validation_mean']:+.6f}" in done.stdout

    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        runs = db.execute("select count(*) from runs").fetchone()[0]
        keys = {row[0] for row in db.execute("select distinct key from metrics")}
        artifacts = db.execute("select count(*) from tags where key = 'exported_to'").fetchone()[0]
    assert runs == 4
    assert {
        "validation/mean_daily_log_growth",
        "validation/sharpe",
        "validation/max_drawdown",
        "validation/annual_turnover",
    } <= keys
    assert artifacts == 2
    # The exported policies are attached to their runs beside the store (mlruns/ next to mlflow.db), not in the
    # folder the sweep ran from.
    assert len(list((tmp_path / "mlruns").rglob("policy/metadata.json"))) == 2
    assert list((tmp_path / "sweeps" / "t" / "ppo").rglob("events.out.tfevents.*")), "no TensorBoard event files"


def trial_rows(experiment: Path) -> dict[str, int]:
    """Iterations recorded per trial directory (lines of result.json)."""
    return {p.parent.name: len(p.read_text().splitlines()) for p in experiment.glob("*/result.json")}


def trial_files(experiment: Path) -> dict[str, dict[str, tuple[bytes, int]]]:
    """Per trial directory, every file in it (checkpoints included) with its content and modification time: a
    trial not rerun leaves all of them as they were, byte for byte and untouched."""
    return {
        trial.name: {
            str(f.relative_to(trial)): (f.read_bytes(), f.stat().st_mtime_ns) for f in trial.rglob("*") if f.is_file()
        }
        for trial in experiment.iterdir()
        if (trial / "result.json").is_file()
    }


@pytest.mark.ray
def test_sweep_killed_mid_algorithm_resumes_its_trials_and_runs_the_algorithms_that_never_started(tmp_path, tiny_csv):
    # Three PPO trials of 4 iterations each, one at a time, so a kill lands with some finished and some not; DQN after.
    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 2000, "dqn": 400}, num_samples=3, concurrent=1)
    experiment = tmp_path / "sweeps" / "t" / "ppo"
    process = subprocess.Popen(
        sweep_command(config),
        cwd=REPO_ROOT,
        # Tune uploads result files to the sweep folder with each experiment snapshot (every 10 s or more by default):
        # snapshot every second so that what this test watches is what a resume will find.
        env={**run_env(), "TUNE_GLOBAL_CHECKPOINT_S": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            statuses = trial_statuses(experiment)
            if "TERMINATED" in statuses.values() and len(statuses) >= 2:
                break
            assert process.poll() is None, "sweep ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("sweep made no progress within 300 s")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True, timeout=60
        )

    before = trial_files(experiment)
    # Finished is what the snapshot a resume reads says: a trial can report its last iteration just before a kill
    # and still be RUNNING there, and Tune then reruns it from its last checkpoint.
    finished_before = {name for name, status in trial_statuses(experiment).items() if status == "TERMINATED"}
    assert finished_before and len(finished_before) < 3
    assert not (tmp_path / "sweeps" / "t" / "dqn").exists()

    done = subprocess.run(
        sweep_command(config, "--resume"), cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = trial_rows(experiment)
    assert len(rows) == 3 and all(n >= 4 for n in rows.values())
    after = trial_files(experiment)
    for name in finished_before:
        assert after[name] == before[name], f"finished trial {name} was rerun (its files changed)"
    assert len(trial_rows(tmp_path / "sweeps" / "t" / "dqn")) == 3
    summary = json.loads((tmp_path / "sweeps" / "t" / "summary.json").read_text())
    assert summary["complete"] and set(summary["algos"]) == {"ppo", "dqn"}
    for algo in ("ppo", "dqn"):
        assert (tmp_path / "models" / algo / "metadata.json").is_file()
        assert summary["exported"][algo] == str(tmp_path / "models" / algo)
    assert f"exported models: {tmp_path / 'models' / 'ppo'}" in done.stdout


@pytest.mark.ray
def test_an_algorithm_killed_before_tunes_first_snapshot_starts_again_with_all_its_trials(tmp_path, tiny_csv):
    # What a kill in the first seconds of an algorithm leaves: Tune's tuner.pkl and nothing else. Tune would
    # "resume" it with one sample instead of two; the sweep starts the algorithm again instead.
    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000}, num_samples=2, concurrent=1)
    first = subprocess.run(sweep_command(config), cwd=REPO_ROOT, env=run_env(), capture_output=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep, experiment = tmp_path / "sweeps" / "t", tmp_path / "sweeps" / "t" / "ppo"
    (sweep / "summary.json").unlink()
    for path in experiment.iterdir():
        if path.name != "tuner.pkl":
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    done = subprocess.run(
        sweep_command(config, "--resume"), cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "holds no snapshot of Tune's to resume from" in done.stderr + done.stdout
    assert len(trial_rows(experiment)) == 2
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["complete"] and summary["algos"]["ppo"]["n_trials"] == 2
    (kept,) = sweep.glob("ppo.unrestorable-*")
    assert [p.name for p in kept.iterdir()] == ["tuner.pkl"]


@pytest.mark.ray
def test_sweeps_get_a_folder_each_named_after_config_data_and_time(tmp_path, tiny_csv, capsys):
    """Without --name a sweep is <config name>-<data>-<time>, so sweeps never share a folder or a summary; a taken
    --name is refused, and --resume takes no settings of its own."""
    import re

    from training.sweep import main as sweep_main
    from training.sweep import new_plan

    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000}, num_samples=1, concurrent=1)
    args = argparse.Namespace(
        config=str(config), algos=None, num_samples=None, timesteps=None, data=None, name=None, models_dir=None
    )
    plan = new_plan(args)
    assert re.fullmatch(r"t-tiny-\d{8}-\d{6}", plan.name)
    assert plan.data_label == str(tiny_csv) and plan.algos == ["ppo"]

    (tmp_path / "sweeps" / "t").mkdir(parents=True)
    (tmp_path / "sweeps" / "t" / "sweep.json").write_text("{}")
    assert sweep_main(["--config", str(config), "--name", "t"]) == 2
    assert "a sweep named 't' exists" in capsys.readouterr().err
    assert sweep_main(["--config", str(config), "--resume", "nope"]) == 2
    assert "no sweep to resume" in capsys.readouterr().err
    assert sweep_main(["--config", str(config), "--resume", "--data", str(tiny_csv)]) == 2
    assert "drop --data" in capsys.readouterr().err


# -- MLflow's files stay with their store (no Ray) --------------------------------------------------------------------


def log_file(uri: str, run_id: str, name: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=mlflow_uri(uri)).log_text(run_id, name, f"policy/{name}")


def artifact_files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("policy/*.txt")}


def test_a_copied_or_moved_checkout_logs_mlflow_files_into_its_own_folder(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri, name = "sqlite:///runs/mlflow.db", "rlportfolio-sweeps"  # the sweep YAML's default, relative to the checkout
    original = tmp_path / "checkout"
    original.mkdir()
    monkeypatch.chdir(original)
    experiment = home_experiment(uri, name)
    first = MlflowClient(tracking_uri=mlflow_uri(uri)).create_run(experiment).info.run_id
    log_file(uri, first, "a.txt")
    assert (original / "runs" / "mlruns" / experiment / first / "artifacts" / "policy" / "a.txt").is_file()

    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    monkeypatch.chdir(copy)
    assert home_experiment(uri, name) == experiment
    second = MlflowClient(tracking_uri=mlflow_uri(uri)).create_run(experiment).info.run_id
    log_file(uri, second, "b.txt")
    log_file(uri, first, "c.txt")  # an earlier run logged to again (a resumed sweep exports its best trial to it)
    assert artifact_files(copy / "runs") == {"a.txt", "b.txt", "c.txt"}
    assert artifact_files(original) == {"a.txt"}, "the copy wrote into the original checkout"
    client = MlflowClient(tracking_uri=mlflow_uri(uri))
    assert client.get_experiment(experiment).artifact_location == str(copy / "runs" / "mlruns" / experiment)
    assert client.get_run(first).info.artifact_uri.startswith(str(copy / "runs" / "mlruns"))

    moved = tmp_path / "moved"
    copy.rename(moved)
    monkeypatch.chdir(moved)
    home_experiment(uri, name)
    log_file(uri, second, "d.txt")
    assert artifact_files(moved / "runs") == {"a.txt", "b.txt", "c.txt", "d.txt"}
    assert not copy.exists() and artifact_files(original) == {"a.txt"}
    downloaded = MlflowClient(tracking_uri=mlflow_uri(uri)).download_artifacts(first, "policy/a.txt", str(tmp_path))
    assert Path(downloaded).read_text() == "a.txt"


def test_runs_logged_where_mlflow_put_them_before_keep_their_files(tmp_path, monkeypatch):
    """An experiment created with MLflow's default location (``mlruns/`` in the folder it was created from) moves
    beside its store; a run whose files are in the old folder keeps pointing there, new runs go beside the store."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = "sqlite:///runs/mlflow.db"
    client = MlflowClient(tracking_uri=mlflow_uri(uri))
    experiment = client.create_experiment("older")
    assert client.get_experiment(experiment).artifact_location == str(tmp_path / "mlruns" / experiment)
    old = client.create_run(experiment).info.run_id
    log_file(uri, old, "old.txt")
    empty = client.create_run(experiment).info.run_id  # nothing logged yet: its files will go beside the store

    assert home_experiment(uri, "older") == experiment
    new = client.create_run(experiment).info.run_id
    log_file(uri, new, "new.txt")
    log_file(uri, empty, "later.txt")
    assert artifact_files(tmp_path / "runs" / "mlruns") == {"new.txt", "later.txt"}
    assert client.get_run(old).info.artifact_uri == str(tmp_path / "mlruns" / experiment / old / "artifacts")
    assert Path(client.download_artifacts(old, "policy/old.txt", str(tmp_path))).read_text() == "old.txt"


# -- what an interrupted Tune experiment summarises to (no Ray) ------------------------------------------------------


def test_a_trial_stopped_before_its_first_result_is_summarised_as_without_a_result(tmp_path, tiny_csv):
    """What Tune's ``ResultGrid`` holds for a trial a Ctrl-C stopped before its first result: no metrics, no config
    (this raised AttributeError in the summary before)."""
    from training.sweep_config import SweepConfig
    from training.sweep_results import summarize_trials

    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000}, num_samples=1, concurrent=1)
    from core.config import load_yaml, parse_config

    sweep = parse_config(SweepConfig, load_yaml(config), where=str(config))
    empty = argparse.Namespace(error=None, metrics={"trial_id": "x"}, config=None, path=str(tmp_path / "trial_x"))
    summary = summarize_trials([empty], sweep, "ppo")
    assert summary.best_trial is None and summary.trials[0].error == "reported no result"

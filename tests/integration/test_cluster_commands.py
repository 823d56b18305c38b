"""`training.submit` and `serving.deploy` before they reach a cluster: what they refuse, by name, and the job they
would submit (the commands themselves run against a real two-node cluster in tests/test_nodes.py)."""

from __future__ import annotations

import argparse
import shlex

import yaml

from serving.deploy import main as deploy_main
from serving.deploy import sqlite_split_brain
from tests.support.paths import REPO_ROOT, free_port
from tests.support.sweeps import write_sweep
from training.submit import entrypoint
from training.submit import main as submit_main


def sweep_on(tmp_path, tiny_csv, storage: str, models: str):
    config = write_sweep(tmp_path, tiny_csv, algos={"ppo": 1000}, num_samples=1, concurrent=1)
    raw = yaml.safe_load(config.read_text())
    raw["storage_path"], raw["models_dir"] = storage, models
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def test_submit_refuses_local_storage_on_a_cluster_and_says_what_to_use(tmp_path, tiny_csv, capsys):
    config = sweep_on(tmp_path, tiny_csv, str(tmp_path / "sweeps"), str(tmp_path / "models"))
    assert submit_main(["--address", "http://127.0.0.1:1", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"error: storage_path: {tmp_path / 'sweeps'} is a local path" in err and "s3://bucket/storage_path" in err
    assert "--shared-filesystem" in err and "Traceback" not in err


def test_submit_names_a_cluster_that_does_not_answer(s3, tmp_path, tiny_csv, capsys):
    config = sweep_on(tmp_path, tiny_csv, s3.uri("submit", "sweeps"), s3.uri("submit", "models"))
    address = f"http://127.0.0.1:{free_port()}"
    assert submit_main(["--address", address, "--config", str(config), "--name", "x", "--shared-filesystem"]) == 2
    assert f"error: --address: no Ray cluster answers at {address}" in capsys.readouterr().err


def test_submit_names_storage_it_cannot_reach(s3, tmp_path, tiny_csv, capsys):
    config = sweep_on(tmp_path, tiny_csv, "s3://no-such-bucket/sweeps", s3.uri("models"))
    assert submit_main(["--address", "http://127.0.0.1:1", "--config", str(config)]) == 1
    assert "error: storage_path: cannot reach s3://no-such-bucket/sweeps from here" in capsys.readouterr().err


def test_the_job_runs_the_sweep_planned_here_under_its_name(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    args = argparse.Namespace(
        config=str(REPO_ROOT / "configs" / "sweep_gpu.yaml"),
        python="python",
        algos="ppo",
        num_samples=2,
        timesteps=None,
        time_budget_s=600.0,
        data=None,
        shared_filesystem=False,
    )
    words = shlex.split(entrypoint(args, "gpu-builtin-20261201-120000"))
    assert words[:5] == ["python", "-m", "training.sweep", "--config", "configs/sweep_gpu.yaml"]  # in the working dir
    assert words[5:] == [
        "--name", "gpu-builtin-20261201-120000", "--no-dashboard",
        "--algos", "ppo", "--num-samples", "2", "--time-budget-s", "600.0",
    ]  # fmt: skip


def test_deploy_refuses_local_models_and_names_a_bucket_without_agents(s3, capsys):
    assert deploy_main(["--address", "http://127.0.0.1:1", "--models", "models"]) == 2
    assert "error: --models: models is a local path, which replicas on other nodes cannot read" in (
        capsys.readouterr().err
    )
    empty = s3.uri("no-agents-here")
    assert deploy_main(["--address", "http://127.0.0.1:1", "--models", empty]) == 2
    assert f"error: {empty}: no exported agents (expected <agent>/metadata.json)" in capsys.readouterr().err


def test_submit_refuses_a_config_the_job_would_not_have(s3, tmp_path, tiny_csv, capsys):
    config = sweep_on(tmp_path, tiny_csv, s3.uri("elsewhere", "sweeps"), s3.uri("elsewhere", "models"))
    address = f"http://127.0.0.1:{free_port()}"
    assert submit_main(["--address", address, "--config", str(config), "--name", "y"]) == 2
    err = capsys.readouterr().err
    assert f"error: --config: {config} is outside this folder, which is what the job uploads" in err
    assert submit_main(["--address", address, "--config", str(config), "--data", str(tiny_csv)]) == 2
    assert "error: --data: the job reads the CSV on the head" in capsys.readouterr().err


def test_a_sqlite_experiment_log_on_several_nodes_needs_its_writers_and_reader_on_one():
    def config(log: str, pins: dict[str, dict]) -> dict:
        deployments = [{"name": name, "ray_actor_options": {"resources": r}} for name, r in pins.items()]
        app = {"name": "rlportfolio", "import_path": "serving.app:build_app", "args": {"experiment_log": log}}
        return {"applications": [{**app, "deployments": deployments}]}

    on_head = {"Ingress": {"head_node": 0.01}, "StatsStore": {"head_node": 0.01}}
    unpinned = config("sqlite:///runs/experiments.db", {})
    assert sqlite_split_brain(unpinned, 1) is None  # one node: one disk
    problem = sqlite_split_brain(unpinned, 2)
    assert problem.startswith("applications[rlportfolio].args.experiment_log: sqlite:///runs/experiments.db is a file")
    assert "postgresql://" in problem
    assert sqlite_split_brain(config("sqlite:///x.db", {"Ingress": {"head_node": 0.01}}), 3) is not None
    assert sqlite_split_brain(config("sqlite:///x.db", on_head), 3) is None
    assert sqlite_split_brain(config("postgresql://db/ab", {}), 3) is None

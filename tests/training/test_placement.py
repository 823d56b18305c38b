"""The GPU sweep profile, resolved without a GPU: each trial's bundles and how trials fit cluster.yaml's nodes."""

from __future__ import annotations

import json

import pytest

from tests.support.paths import REPO_ROOT
from training.placement import Bundle, TrialPlacement, trials_per_node
from training.sweep import main


def test_the_gpu_profile_dry_run_places_learners_on_gpus_env_runners_on_cpus_and_nothing_on_the_head(capsys):
    code = main(
        [
            "--config",
            str(REPO_ROOT / "configs" / "sweep_gpu.yaml"),
            "--dry-run",
            "--cluster",
            str(REPO_ROOT / "cluster.yaml"),
            "--algos",
            "ppo,dqn",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    placements = json.loads(out.out)
    assert set(placements) == {"ppo", "dqn"}
    for placement in placements.values():
        bundles = placement["trial"]["bundles"]
        learners = [b["resources"] for b in bundles if b["role"] == "learner"]
        runners = [b["resources"] for b in bundles if b["role"] == "env_runner"]
        assert learners == [{"GPU": 1.0}] and len(runners) == 4 and all("GPU" not in r for r in runners)
        fits = {n["node_type"]: n["trials_per_node"] for n in placement["nodes"]}
        assert fits == {"head": 0, "gpu_worker": 1}
        assert placement["nodes_needed"] == {"gpu_worker": 8} and placement["fits"]
    assert "learner     1 GPU" in out.err and "nothing started" in out.err


def test_trials_pack_onto_a_node_by_their_scarcest_resource():
    trial = TrialPlacement(
        algo="ppo",
        strategy="PACK",
        bundles=[Bundle(role="main", resources={"CPU": 1.0}), Bundle(role="learner", resources={"GPU": 1.0})],
        total={"CPU": 5.0, "GPU": 1.0},
    )
    assert trials_per_node(trial, {"CPU": 16, "GPU": 4}) == 3
    assert trials_per_node(trial, {"CPU": 48, "GPU": 4}) == 4
    assert trials_per_node(trial, {"CPU": 8}) == 0


def test_a_cluster_file_without_node_resources_is_named(tmp_path, capsys):
    bad = tmp_path / "cluster.yaml"
    bad.write_text("available_node_types:\n  worker: {max_workers: 2, resources: {}}\n")
    code = main(["--config", str(REPO_ROOT / "configs" / "sweep_gpu.yaml"), "--dry-run", "--cluster", str(bad)])
    assert code == 2
    assert "available_node_types.worker.resources" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--resume"])
def test_a_dry_run_plans_a_new_sweep_only(flag, capsys):
    assert main(["--config", str(REPO_ROOT / "configs" / "sweep_gpu.yaml"), "--dry-run", flag]) == 2
    assert "drop --resume" in capsys.readouterr().err

"""training.checkpoint_pruning on a real Tune experiment: old checkpoints go, but never one a snapshot still names."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import ray.cloudpickle
from ray import tune

from training.checkpoint_pruning import CheckpointPruner

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import the tests package


class Counter(tune.Trainable):
    """Counts iterations; checkpoints are a file with the count, fast enough to checkpoint between snapshots."""

    def setup(self, config: dict) -> None:
        self.count = 0

    def step(self) -> dict:
        time.sleep(0.02)
        self.count += 1
        return {"count": self.count}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        (Path(checkpoint_dir) / "count").write_text(str(self.count))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        self.count = int((Path(checkpoint_dir) / "count").read_text())


class SnapshotWatcher(tune.Callback):
    """Listed after the pruner: at every snapshot, the checkpoints the previous two snapshots named must still exist."""

    def __init__(self) -> None:
        self.trials: dict[str, object] = {}
        self.snapshots: list[dict[str, str]] = []
        self.missing: list[str] = []

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        self.trials[trial.trial_id] = trial

    def get_state(self) -> None:
        named = {tid: t.checkpoint.path for tid, t in self.trials.items() if t.checkpoint is not None}
        self.snapshots.append(named)
        for snapshot in self.snapshots[-2:]:
            self.missing += [path for path in snapshot.values() if not Path(path).exists()]
        return None


def test_pruner_keeps_every_checkpoint_a_snapshot_names_and_deletes_the_rest(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0.1")  # snapshots every 0.1 s: many chances for the race
    watcher = SnapshotWatcher()
    tuner = tune.Tuner(
        Counter,
        param_space={"trial": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(
            name="prune",
            storage_path=str(tmp_path),
            stop={"training_iteration": 120},
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None, checkpoint_frequency=1, checkpoint_at_end=True),
            callbacks=[CheckpointPruner(keep=2), watcher],
            verbose=0,
        ),
    )
    results = tuner.fit()
    assert not results.errors
    assert len(watcher.snapshots) >= 5, "the test needs several snapshots during the run"
    assert watcher.missing == []
    for result in results:
        on_disk = sorted(Path(result.path).glob("checkpoint_*"))
        assert 2 <= len(on_disk) < 20, f"{result.path}: {len(on_disk)} checkpoints left of 120"
        assert result.checkpoint.path == str(on_disk[-1])
        assert (on_disk[-1] / "count").read_text() == "120"


def test_pruner_refuses_to_keep_nothing():
    with pytest.raises(ValueError, match="keep must be at least 1"):
        CheckpointPruner(keep=0)

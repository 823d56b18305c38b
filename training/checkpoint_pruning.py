"""Delete a trial's old Tune checkpoints only once no saved experiment snapshot can still name them.

Tune's own ``CheckpointConfig(num_to_keep=k)`` deletes a trial's oldest checkpoint the moment its ``k + 1``-th is
registered, while the experiment snapshot that a resume reads (written every 10 s or more) may still name the deleted
one; a sweep killed in that window cannot resume that trial ("Could not recover from checkpoint as it does not exist
on storage anymore", seen in CI). Tune has no hook for "snapshot written", but it asks every callback for its state
while it writes one (``Callback.get_state``), after the snapshot's trial records are fixed. ``CheckpointPruner`` keeps
every checkpoint from the oldest one named by the last two snapshots onwards (the newest snapshot may still be
uploading when the process dies; the one before it is complete), plus the newest ``keep``, and deletes the rest
through the checkpoint's own filesystem, so it works for storage URIs as it does for local folders.

Written by hand because Tune offers no snapshot-consistent retention; run the sweep with ``num_to_keep=None`` so that
Tune deletes nothing itself.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from ray import tune

log = logging.getLogger(__name__)

SNAPSHOTS_KEPT = 2


class CheckpointPruner(tune.Callback):
    """Tune callback: per trial, keep the newest ``keep`` checkpoints and every one a recent snapshot names."""

    def __init__(self, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"CheckpointPruner: keep must be at least 1, got {keep}")
        self.keep = keep
        self._trials: dict[str, Any] = {}
        self._checkpoints: dict[str, list[tune.Checkpoint]] = {}  # per trial id, oldest first
        self._named: dict[str, deque[str | None]] = {}  # per trial id: the latest checkpoint path of recent snapshots

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: tune.Checkpoint, **info: Any) -> None:
        self._trials[trial.trial_id] = trial
        self._checkpoints.setdefault(trial.trial_id, []).append(checkpoint)
        # Before this snapshot-to-be, the trial's snapshots named whatever it had last: a trial first seen here may be
        # one resumed from a checkpoint that the next snapshot must still be able to fall back on.
        self._named.setdefault(trial.trial_id, deque(maxlen=SNAPSHOTS_KEPT))

    def get_state(self) -> dict | None:
        """Called while Tune writes an experiment snapshot: record what it names, then prune what none can name."""
        for trial_id, trial in self._trials.items():
            latest = trial.checkpoint
            self._named[trial_id].append(latest.path if latest is not None else None)
            self._prune(trial_id)
        return None  # nothing to restore: checkpoints older than a restored snapshot are never deleted

    def _prune(self, trial_id: str) -> None:
        checkpoints = self._checkpoints[trial_id]
        named = self._named[trial_id]
        if len(named) < SNAPSHOTS_KEPT or None in named:
            return  # a snapshot saved before this trial's first checkpoint: it can only restart the trial
        paths = [c.path for c in checkpoints]
        oldest_named = min((paths.index(p) for p in named if p in paths), default=0)
        cut = min(oldest_named, max(len(checkpoints) - self.keep, 0))
        for checkpoint in checkpoints[:cut]:
            try:
                checkpoint.filesystem.delete_dir(checkpoint.path)
            except FileNotFoundError:
                pass
            except OSError as error:  # a storage hiccup must not fail the sweep: the next snapshot tries again
                log.warning(f"could not delete old checkpoint {checkpoint.path}: {error}")
                cut = checkpoints.index(checkpoint)
                break
        del checkpoints[:cut]

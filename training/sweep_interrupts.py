"""Ctrl-C in a sweep: Tune stopped gracefully, and what the user is told (what is done, what is not, the command
that finishes it; exit status 130, as a shell reports a command SIGINT ended)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.cli import prog
from core.storage import Location
from training.sweep_state import AlgoSummary, SweepPlan

log = logging.getLogger("training.sweep")

INTERRUPTED = 130  # the exit status after Ctrl-C, as a shell reports a command SIGINT ended (128 + 2)


class Interrupts:
    """Ctrl-C (SIGINT) during a sweep.

    While an algorithm's ``Tuner.fit`` runs, the first Ctrl-C stops Tune the way its own SIGINT handler would (through
    the SIGUSR1 handler Tune installs for that): the trials stop where they are, and Tune snapshots them for
    ``--resume`` before ``fit`` returns. A second Ctrl-C, or one anywhere else (starting Ray, exporting), raises
    ``KeyboardInterrupt`` at once. ``received`` says whether one came."""

    def __init__(self) -> None:
        self.received = False
        self._in_fit = False
        self._before_fit: Any = signal.SIG_DFL

    def install(self) -> None:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT is answered here; Tune still listens on SIGUSR1
        signal.signal(signal.SIGINT, self._on_sigint)

    @contextlib.contextmanager
    def tune_fit(self) -> Iterator[None]:
        """Around one ``Tuner.fit``; Tune leaves its SIGUSR1 handler behind, so the one before is put back after."""
        self._before_fit, self._in_fit = signal.getsignal(signal.SIGUSR1), True
        try:
            yield
        finally:
            self._in_fit = False
            signal.signal(signal.SIGUSR1, self._before_fit)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        first, self.received = not self.received, True
        stop_tune = signal.getsignal(signal.SIGUSR1)
        if first and self._in_fit and callable(stop_tune) and stop_tune is not self._before_fit:
            log.warning(
                "Ctrl-C: stopping the sweep; Tune saves every trial where it is, for --resume (Ctrl-C again to stop "
                "at once)"
            )
            # A trial stopped before its first result has no result files, which Tune's analysis then reports.
            logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(
                lambda record: not record.getMessage().startswith("Failed to fetch metrics")
            )
            stop_tune(signal.SIGUSR1, frame)
            return
        raise KeyboardInterrupt


def resume_command(args: argparse.Namespace, plan: SweepPlan) -> str:
    """The command that continues ``plan``, as this one was typed (``rlportfolio sweep`` or the Python it ran on)."""
    head = prog("training.sweep")
    if head.startswith("python -m "):
        python = Path(sys.executable)
        if python.is_relative_to(Path.cwd()):
            python = python.relative_to(Path.cwd())
        head = f"{python} -m training.sweep"
    return " ".join([*shlex.split(head), "--config", shlex.quote(args.config), "--resume", shlex.quote(plan.name)])


def stopped(
    args: argparse.Namespace,
    plan: SweepPlan | None,
    folder: Location | None,
    summaries: dict[str, AlgoSummary],
    algo: tuple[str, str] | None,
) -> int:
    """After Ctrl-C: what is done, what is not, and the command that finishes it; exit status 130 (128 + SIGINT)."""
    if plan is None or folder is None:
        print("\ninterrupted before the sweep started; nothing to resume", file=sys.stderr, flush=True)
        return INTERRUPTED
    lines = ["", f"interrupted: sweep {plan.name} in {folder} is not complete"]
    for name in plan.algos:
        if name in summaries:
            lines.append(f"  {name}: done, exported to {summaries[name].exported or 'nothing (no trial finished)'}")
        elif algo is not None and algo[0] == name and algo[1] == "running":
            lines.append(f"  {name}: stopped before it finished; nothing of it was exported")
        elif algo is not None and algo[0] == name:  # its trials had finished: --resume exports without training
            lines.append(f"  {name}: stopped while its best trial was being exported; --resume exports it again")
        else:
            lines.append(f"  {name}: not started")
    lines.append(f"finish it with: {resume_command(args, plan)}")
    print("\n".join(lines), file=sys.stderr, flush=True)
    return INTERRUPTED

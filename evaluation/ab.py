"""A/B statistics offline, from an export of the experiment log (``rlportfolio experiments export``): the
same figures ``/ab/stats`` shows, computed by the same engine (``experiments.experiment.Experiment``) over the exported
rows, so an analyst can check the server's verdict, or slice the rows differently first.

    .venv/bin/python -m evaluation.ab --log ab.parquet --control equal_weight [--experiment KEY] [--alpha 0.05]

Prints JSON: per arm requests, errors, latency, feedback, mean and spread of returns, drawdown; each challenger
against the control (always-valid sequence and p-value, the verdict, Welch labelled fixed-horizon); the
sample-ratio test against the shares each row was routed under (the export's ``split_shares``). The experiment's
tuning (``tuning_n``, guardrails) is the default one unless given: the server's own figures match when its config
did not change them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import ConfigError, DataError
from experiments.config import ExperimentConfig
from experiments.experiment import Experiment
from experiments.runner import feed_answer

COLUMNS = (
    "request_id",
    "experiment",
    "kind",
    "routed_arm",
    "arm",
    "forced",
    "latency_ms",
    "errors",
    "split_shares",
    "client_id",
    "seq",
    "created_at",
    "feedback_at",
)


def read_export(path: Path) -> pd.DataFrame:
    """An export as a frame; a ``DataError`` naming the file for a missing, unreadable or foreign one."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (write one with rlportfolio experiments export)")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise DataError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from None
    missing = [c for c in (*COLUMNS, "realized_return") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: not an experiment log export, missing columns {missing}")
    return frame


def ab_statistics(
    frame: pd.DataFrame, control: str, *, experiment: str | None = None, alpha: float = 0.05
) -> dict[str, Any]:
    """The experiment's statistics from exported rows (answers of one experiment; shadows and forced rows out)."""
    if experiment is None:
        keys = sorted(frame["experiment"].unique())
        if len(keys) != 1:
            raise ConfigError(f"--experiment: the export holds {len(keys)} experiments ({keys}); name one")
        experiment = keys[0]
    rows = frame[(frame["experiment"] == experiment) & (frame["kind"] == "answer") & ~frame["forced"].astype(bool)]
    arms = sorted(set(rows["routed_arm"]) | {a for s in rows["split_shares"].unique() for a in json.loads(s)})
    if control not in arms:
        raise ConfigError(f"--control: '{control}' got no traffic in {experiment}; arms are {arms}")
    config = ExperimentConfig(
        name=experiment, control=control, challengers=tuple(a for a in arms if a != control), alpha=alpha
    )
    engine = Experiment(config)
    parsed: dict[str, dict[str, float]] = {}
    rows = rows.sort_values("seq")  # the order the server read them in
    for row in rows.to_dict("records"):
        feed_answer(engine, row, parsed.setdefault(row["split_shares"], json.loads(row["split_shares"])))
    reported = rows[rows["realized_return"].notna()].sort_values("feedback_at")
    for row in reported.itertuples(index=False):  # by intention to treat, as the server counts them
        engine.feedback(row.routed_arm, float(row.realized_return), at=float(row.feedback_at))
    return {"experiment": experiment, **engine.summary()}


def main(argv: Sequence[str] | None = None) -> int:
    from core.cli import fail, prog

    parser = argparse.ArgumentParser(prog=prog("evaluation.ab"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", required=True, help="an export of the experiment log (.csv or .parquet)")
    parser.add_argument("--control", required=True, help="the control arm")
    parser.add_argument("--experiment", help="the experiment key, when the export holds several")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    try:
        out = ab_statistics(read_export(Path(args.log)), args.control, experiment=args.experiment, alpha=args.alpha)
    except (ConfigError, DataError) as exc:
        return fail(exc)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

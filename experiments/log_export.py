"""Exporting the experiment log for offline analysis: one row per answer with its feedback, as CSV or Parquet.

rlportfolio experiments export --url sqlite:///runs/experiments.db --out ab.parquet   # or .csv
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from experiments.log_schema import DEFAULT_URL, assignments
from experiments.log_store import ExperimentLog


def rows_as_table(log: ExperimentLog, experiment: str | None = None) -> Iterable[dict[str, Any]]:
    """One row per answer, failed request or shadow evaluation with its feedback and the time it came (None when
    none came) and the shares of the split it was routed under (JSON; for the sample-ratio test), in ``seq``
    order, for offline analysis."""
    reports = {r["request_id"]: (r["realized_return"], r["created_at"]) for r in log.iter_feedback(experiment)}
    shares = {(d["experiment"], d["split_version"]): json.dumps(d["shares"]) for d in log.decisions(experiment)}
    for row in log.iter_assignments(experiment):
        yield {
            **row,
            "weights": json.dumps(row["weights"]),
            "split_shares": shares.get((row["experiment"], row["split_version"]), "{}"),
            "realized_return": reports.get(row["request_id"], (None, None))[0],
            "feedback_at": reports.get(row["request_id"], (None, None))[1],
        }


def export(log: ExperimentLog, out: Path, experiment: str | None = None) -> int:
    """Write ``rows_as_table`` to ``out`` (``.csv`` or ``.parquet``, by its suffix), atomically; the row count."""
    import pandas as pd

    if out.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--out: '{out}' must end in .csv or .parquet")
    frame = pd.DataFrame(list(rows_as_table(log, experiment)))
    if frame.empty:
        frame = pd.DataFrame(
            columns=[c.name for c in assignments.columns] + ["split_shares", "realized_return", "feedback_at"]
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    return len(frame)


def main(argv: Sequence[str] | None = None) -> int:
    from core.cli import fail, prog

    parser = argparse.ArgumentParser(prog=prog("experiments.log_export"), description="the A/B experiment log")
    commands = parser.add_subparsers(dest="command", required=True)
    ex = commands.add_parser("export", help="write every answer with its feedback as CSV or Parquet")
    ex.add_argument("--url", default=DEFAULT_URL, help=f"SQLAlchemy URL of the log (default {DEFAULT_URL})")
    ex.add_argument("--out", required=True, help="output file, .csv or .parquet")
    ex.add_argument("--experiment", help="only this experiment (its key, as /ab/experiment shows it)")
    args = parser.parse_args(argv)
    try:
        log = ExperimentLog(args.url, create=False)
        n = export(log, Path(args.out), args.experiment)
    except ConfigError as exc:
        return fail(exc)
    print(f"wrote {n:,} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

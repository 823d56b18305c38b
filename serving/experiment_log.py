"""The durable experiment log: assignments, responses, feedback and decisions in a real database.

A SQLite file by default, any SQLAlchemy URL by configuration (PostgreSQL on a cluster). Three append-only tables:

- ``assignments``: one row per answered request: request id, experiment, client id (may be empty), arm, model
  version, the weights returned (JSON), latency, whether a fallback answered, the time.
- ``feedback``: one row per realised return reported for a request id (the first report wins; later ones are
  refused by the primary key).
- ``decisions``: the experiment's changes (split, ramp step, promotion, rollback), each with its reason.

Writers append in batches (``append``: one transaction for many rows); statistics are rebuilt from the log after a
restart (``read``). SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed batch survives the process
that wrote it being killed (not a power cut, which ``synchronous=FULL`` would add at the cost of an fsync per
batch), and readers never block the writer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from core.errors import ConfigError

DEFAULT_URL = "sqlite:///runs/experiments.db"

metadata = sa.MetaData()
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("experiment", sa.String(128), nullable=False, index=True),
    sa.Column("client_id", sa.String(256), nullable=False, default=""),
    sa.Column("arm", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False, default=""),
    sa.Column("weights", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("fallback", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("realized_return", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(128), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("split", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Assignment:
    request_id: str
    experiment: str
    arm: str
    weights: tuple[float, ...]
    latency_ms: float
    client_id: str = ""
    model_version: str = ""
    fallback: bool = False
    created_at: float = 0.0

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "weights": json.dumps(list(self.weights)), "created_at": self.created_at or time.time()}


@dataclass(frozen=True)
class Feedback:
    request_id: str
    realized_return: float
    created_at: float = 0.0

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at or time.time()}


@dataclass(frozen=True)
class Decision:
    experiment: str
    kind: str  # split | ramp | promote | rollback | hold
    reason: str
    split: Mapping[str, float]
    created_at: float = 0.0

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "split": json.dumps(dict(self.split)), "created_at": self.created_at or time.time()}


@dataclass(frozen=True)
class LogContents:
    assignments: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    decisions: list[dict[str, Any]]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class ExperimentLog:
    """Appends to and reads the log at ``url`` (tables created on first use)."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        try:
            self.url = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError(
                f"experiment log: '{url}' is not a database URL (e.g. sqlite:///runs/experiments.db)"
            ) from None
        if self.url.get_backend_name() == "sqlite" and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(self.url)
        if self.url.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise ConfigError(
                f"experiment log: cannot open {self.url.render_as_string(hide_password=True)}: {exc}"
            ) from None

    def append(
        self,
        assignments_: Sequence[Assignment] = (),
        feedback_: Sequence[Feedback] = (),
        decisions_: Sequence[Decision] = (),
    ) -> list[str]:
        """Write a batch in one transaction; the request ids whose feedback was already logged (those are skipped)."""
        duplicates: list[str] = []
        with self.engine.begin() as conn:
            if assignments_:
                conn.execute(sa.insert(assignments), [a.row() for a in assignments_])
            if feedback_:
                known = {
                    row[0]
                    for row in conn.execute(
                        sa.select(feedback.c.request_id).where(
                            feedback.c.request_id.in_([f.request_id for f in feedback_])
                        )
                    )
                }
                fresh, seen = [], set(known)
                for item in feedback_:
                    if item.request_id in seen:
                        duplicates.append(item.request_id)
                    else:
                        seen.add(item.request_id)
                        fresh.append(item.row())
                if fresh:
                    conn.execute(sa.insert(feedback), fresh)
            if decisions_:
                conn.execute(sa.insert(decisions), [d.row() for d in decisions_])
        return duplicates

    def read(self, experiment: str | None = None) -> LogContents:
        """Everything logged (for one experiment if given), oldest first."""
        with self.engine.connect() as conn:
            query = sa.select(assignments).order_by(assignments.c.created_at)
            if experiment is not None:
                query = query.where(assignments.c.experiment == experiment)
            rows = [dict(r._mapping) for r in conn.execute(query)]
            ids = {r["request_id"] for r in rows}
            fb = [dict(r._mapping) for r in conn.execute(sa.select(feedback).order_by(feedback.c.created_at))]
            if experiment is not None:
                fb = [r for r in fb if r["request_id"] in ids]
            dq = sa.select(decisions).order_by(decisions.c.id)
            if experiment is not None:
                dq = dq.where(decisions.c.experiment == experiment)
            ds = [dict(r._mapping) for r in conn.execute(dq)]
        for r in rows:
            r["weights"] = json.loads(r["weights"])
        for d in ds:
            d["split"] = json.loads(d["split"])
        return LogContents(rows, fb, ds)

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for name, table in (("assignments", assignments), ("feedback", feedback), ("decisions", decisions))
            }

    def close(self) -> None:
        self.engine.dispose()


def rows_as_table(contents: LogContents) -> Iterable[dict[str, Any]]:
    """One row per assignment with its feedback (None when none came), for export and offline analysis."""
    returns = {r["request_id"]: r["realized_return"] for r in contents.feedback}
    for row in contents.assignments:
        yield {**row, "weights": json.dumps(row["weights"]), "realized_return": returns.get(row["request_id"])}

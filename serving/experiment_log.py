"""The durable experiment log: assignments, responses, feedback and decisions in a real database.

A SQLite file by default, any SQLAlchemy URL by configuration (PostgreSQL on a cluster: ``postgresql://`` goes through
psycopg 3, which the project installs). Three append-only tables, each with an integer ``seq`` that readers tail:

- ``assignments``: one row per answered (or failed) ``/allocate`` and per shadow evaluation: request id, experiment,
  client id (may be empty), the arm the split routed to, the arm that answered (empty when none could), whether
  ``X-Agent`` forced it (forced requests are logged but kept out of the experiment's statistics), the model version,
  the weights returned (JSON), latency, failed agent calls before the answer, the split version it was routed under,
  the time.
- ``feedback``: one row per realised return reported for a request id; the first report wins (the request id is
  unique), later ones are refused.
- ``decisions``: the experiment's changes (start, split, ramp, promotion, rollback, bandit moves, deploys), each with
  its reason, who made it, the shares and the bucket layout they produced.

Ingress replicas append in batches (group commit: a request waits for the batch it joined to be committed, so an
answer is never acknowledged before its row is durable); the app's experiment store tails the tables by ``seq`` and
rebuilds its statistics from them after a restart. SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed
batch survives the process that wrote it being killed (not a power cut, which ``synchronous=FULL`` would add at the
cost of an fsync per batch), and readers never block the writers.

Tailing by ``seq`` is exact when writers commit in ``seq`` order, as SQLite's one-writer-at-a-time does. Where
transactions commit out of order (PostgreSQL with several writers), a ``seq`` skipped by a tail may appear later:
``Tail`` re-asks for skipped ``seq`` values for ``GAP_RECHECK_S`` seconds.

    python -m serving.experiment_log export --url sqlite:///runs/experiments.db --out ab.parquet   # or .csv
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from core.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///runs/experiments.db"
GAP_RECHECK_S = 60.0
MAX_GAPS = 1_000
READ_CHUNK = 20_000

metadata = sa.MetaData()
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("experiment", sa.String(160), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # answer | shadow
    sa.Column("client_id", sa.String(256), nullable=False),
    sa.Column("routed_arm", sa.String(128), nullable=False),
    sa.Column("arm", sa.String(128), nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("weights", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("split_version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("realized_return", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment", sa.String(160), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("arm", sa.String(128), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # engine | admin | deploy
    sa.Column("split_version", sa.Integer, nullable=False),
    sa.Column("shares", sa.Text, nullable=False),
    sa.Column("layout", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),  # the settings it applied under (JSON)
    sa.Column("state", sa.Text, nullable=False),  # the experiment's control state after it (JSON), for rebuilds
    sa.Column("created_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Assignment:
    """One ``/allocate`` answer (``kind`` answer) or shadow evaluation (``kind`` shadow)."""

    request_id: str
    experiment: str
    routed_arm: str
    arm: str  # the arm that answered; "" when none could (the request failed)
    weights: tuple[float, ...]
    latency_ms: float
    split_version: int = 0
    client_id: str = ""
    forced: bool = False
    model_version: str = ""
    errors: int = 0
    kind: Literal["answer", "shadow"] = "answer"
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Feedback:
    request_id: str
    realized_return: float
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class DecisionRecord:
    experiment: str
    kind: str  # start | split | ramp | promote | rollback | bandit | deploy
    reason: str
    source: str  # engine | admin | deploy
    split_version: int
    shares: Mapping[str, float]
    layout: Mapping[str, Any]
    config: Mapping[str, Any]
    state: Mapping[str, Any]
    arm: str | None = None
    created_at: float = field(default_factory=time.time)

    def row(self) -> dict[str, Any]:
        return {
            **asdict(self),
            **{key: json.dumps(dict(getattr(self, key))) for key in ("shares", "layout", "config", "state")},
        }


FeedbackStatus = Literal["recorded", "unknown", "duplicate"]

# The writer's column order: the tables' own, less the ``seq`` the database assigns.
ASSIGNMENT_COLUMNS = tuple(c.name for c in assignments.columns if c.name != "seq")
DECISION_COLUMNS = tuple(c.name for c in decisions.columns if c.name != "seq")


def _assignment_values(a: Assignment) -> tuple:
    return tuple(json.dumps(list(a.weights)) if c == "weights" else getattr(a, c) for c in ASSIGNMENT_COLUMNS)


def _decision_values(d: DecisionRecord) -> tuple:
    row = d.row()
    return tuple(row[c] for c in DECISION_COLUMNS)


@dataclass(frozen=True)
class LogContents:
    assignments: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    decisions: list[dict[str, Any]]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _decode_assignment(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["weights"] = json.loads(out["weights"])
    return out


def _decode_decision(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("shares", "layout", "config", "state"):
        out[key] = json.loads(out[key])
    return out


class ExperimentLog:
    """Appends to and reads the log at ``url`` (tables created on first use)."""

    def __init__(self, url: str = DEFAULT_URL, *, create: bool = True) -> None:
        """:param create: make the database file (SQLite) and tables when missing; else a missing file is an error."""
        try:
            self.url = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError(
                f"experiment_log: '{url}' is not a database URL (e.g. sqlite:///runs/experiments.db)"
            ) from None
        if self.url.drivername == "postgresql":  # SQLAlchemy's default driver is psycopg2; the project ships psycopg 3
            self.url = self.url.set(drivername="postgresql+psycopg")
        if self.url.get_backend_name() == "sqlite" and self.url.database not in (None, "", ":memory:"):
            path = Path(self.url.database).expanduser()
            if not create and not path.is_file():
                raise ConfigError(f"experiment_log: {path} does not exist (no experiment has been logged there)")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(self.url)
        except (SQLAlchemyError, ImportError) as exc:
            raise ConfigError(f"experiment_log: cannot use {self.where}: {exc}") from None
        if self.url.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        for attempt in range(3):  # replicas starting together race to create the tables
            try:
                metadata.create_all(self.engine)
                break
            except SQLAlchemyError as exc:
                if attempt == 2:
                    raise ConfigError(f"experiment_log: cannot open {self.where}: {exc}") from None
                time.sleep(0.5)
        self._write_lock = threading.Lock()
        self._connection: Any = None
        self._sql = self._statements()

    @property
    def where(self) -> str:
        return self.url.render_as_string(hide_password=True)

    # -- writing --------------------------------------------------------------------------------------------------

    def append(
        self,
        assignments_: Sequence[Assignment] = (),
        feedback_: Sequence[Feedback] = (),
        decisions_: Sequence[DecisionRecord] = (),
    ) -> list[tuple[FeedbackStatus, str | None]]:
        """Write a batch in one transaction. Per feedback, in order: ``("recorded", arm that answered)`` (also for a
        repeat of an already recorded report with the same return: a client's retry), ``("unknown", None)`` (no
        such answered request, in the log or in this batch) or ``("duplicate", None)`` (a different return was
        already reported).

        Written through one DBAPI connection with prepared statements, not SQLAlchemy's ORM-free Core: the ingress
        commits a batch per request at low load, and Core's per-batch work (connection checkout, statement
        compilation lookups, parameter processing) cost about 1.4 ms of ingress CPU per request there
        (``benchmarks/serve_load.py``, c=1). ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL) makes a
        report that races another replica's for the same request id lose cleanly instead of failing the batch."""
        statuses: list[tuple[FeedbackStatus, str | None]] = []
        with self._write_lock:
            connection = self._writer()
            cursor = connection.cursor()
            try:
                if assignments_:
                    cursor.executemany(self._sql["assignment"], [_assignment_values(a) for a in assignments_])
                for item in feedback_:
                    cursor.execute(self._sql["answered"], (item.request_id,))
                    found = cursor.fetchone()
                    if found is None:
                        statuses.append(("unknown", None))
                        continue
                    cursor.execute(self._sql["feedback"], (item.request_id, item.realized_return, item.created_at))
                    if cursor.rowcount == 1:
                        statuses.append(("recorded", found[0]))
                        continue
                    cursor.execute(self._sql["reported"], (item.request_id,))
                    same = cursor.fetchone()[0] == item.realized_return
                    statuses.append(("recorded", found[0]) if same else ("duplicate", None))
                if decisions_:
                    cursor.executemany(self._sql["decision"], [_decision_values(d) for d in decisions_])
                connection.commit()
            except BaseException:
                try:
                    connection.rollback()
                except Exception:
                    pass
                self._drop_writer()  # a broken connection is not reused
                raise
            finally:
                cursor.close()
        return statuses

    def _writer(self) -> Any:
        if self._connection is None:
            self._connection = self.engine.raw_connection()
        return self._connection

    def _drop_writer(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None

    def _statements(self) -> dict[str, str]:
        """The writer's SQL in the driver's parameter style."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

        def insert(table: sa.Table, columns: Sequence[str], tail: str = "") -> str:
            return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))}){tail}"

        return {
            "assignment": insert(assignments, ASSIGNMENT_COLUMNS),
            "decision": insert(decisions, DECISION_COLUMNS),
            "feedback": insert(
                feedback, ("request_id", "realized_return", "created_at"), " ON CONFLICT (request_id) DO NOTHING"
            ),
            "answered": f"SELECT arm FROM assignments WHERE request_id = {mark} AND kind = 'answer' AND arm != ''",
            "reported": f"SELECT realized_return FROM feedback WHERE request_id = {mark}",
        }

    # -- reading --------------------------------------------------------------------------------------------------

    def decisions(self, experiment: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(decisions).order_by(decisions.c.seq)
        if experiment is not None:
            query = query.where(decisions.c.experiment == experiment)
        with self.engine.connect() as conn:
            return [_decode_decision(r._mapping) for r in conn.execute(query)]

    def last_decision(self, experiment: str) -> dict[str, Any] | None:
        query = sa.select(decisions).where(decisions.c.experiment == experiment).order_by(decisions.c.seq.desc())
        with self.engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return None if row is None else _decode_decision(row._mapping)

    def read(self, experiment: str | None = None) -> LogContents:
        """Everything logged (for one experiment if given), oldest first."""
        rows = list(self.iter_assignments(experiment))
        fb = list(self.iter_feedback(experiment))
        return LogContents(rows, fb, self.decisions(experiment))

    def iter_assignments(self, experiment: str | None = None) -> Iterator[dict[str, Any]]:
        """Assignment rows (one experiment's if given), oldest first."""
        query = sa.select(assignments)
        if experiment is not None:
            query = query.where(assignments.c.experiment == experiment)
        return (_decode_assignment(row) for row in self._chunks(query, assignments.c.seq))

    def iter_feedback(self, experiment: str | None = None) -> Iterator[dict[str, Any]]:
        """Feedback rows with the experiment, arms and kind of the request they report on, oldest first."""
        query = self._feedback_query()
        if experiment is not None:
            query = query.where(assignments.c.experiment == experiment)
        return self._chunks(query, feedback.c.seq)

    def _chunks(self, query: sa.Select, seq: sa.Column) -> Iterator[dict[str, Any]]:
        """``query``'s rows by ``seq``, ``READ_CHUNK`` at a time (no connection held between chunks)."""
        last = 0
        while True:
            with self.engine.connect() as conn:
                chunk = [
                    dict(r._mapping) for r in conn.execute(query.where(seq > last).order_by(seq).limit(READ_CHUNK))
                ]
            yield from chunk
            if len(chunk) < READ_CHUNK:
                return
            last = chunk[-1]["seq"]

    @staticmethod
    def _feedback_query() -> sa.Select:
        return sa.select(
            feedback.c.seq,
            feedback.c.request_id,
            feedback.c.realized_return,
            feedback.c.created_at,
            assignments.c.experiment,
            assignments.c.arm,
            assignments.c.routed_arm,
            assignments.c.forced,
        ).join(assignments, assignments.c.request_id == feedback.c.request_id)

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for name, table in (("assignments", assignments), ("feedback", feedback), ("decisions", decisions))
            }

    def close(self) -> None:
        with self._write_lock:
            self._drop_writer()
        self.engine.dispose()


class Tail:
    """New rows of one experiment in one table since the last call, by ``seq``.

    The table is read whole (every experiment's rows, filtered here), so the rows of other experiments are not
    mistaken for gaps. Where transactions can commit out of ``seq`` order (not SQLite, whose writers take turns), a
    skipped ``seq`` is asked for again for ``GAP_RECHECK_S`` seconds, at most ``MAX_GAPS`` of them."""

    def __init__(self, log: ExperimentLog, table: Literal["assignments", "feedback"], experiment: str) -> None:
        self.log, self.table, self.experiment = log, table, experiment
        self.cursor = 0
        self.exhausted = False  # the last poll read everything there was
        self._gaps: dict[int, float] = {}  # seq -> when first missed
        self._track_gaps = log.engine.dialect.name != "sqlite"

    def poll(self, limit: int = READ_CHUNK) -> list[dict[str, Any]]:
        """This experiment's new rows among the next ``limit`` of the table, oldest first."""
        if self.table == "assignments":
            seq, query = assignments.c.seq, sa.select(assignments)
        else:
            seq, query = feedback.c.seq, ExperimentLog._feedback_query()
        now = time.monotonic()
        self._gaps = {s: t for s, t in self._gaps.items() if now - t < GAP_RECHECK_S}
        condition = seq > self.cursor
        if self._gaps:
            condition = sa.or_(condition, seq.in_(list(self._gaps)))
        with self.log.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.where(condition).order_by(seq).limit(limit))]
        self.exhausted = len(rows) < limit
        for row in rows:
            s = row["seq"]
            self._gaps.pop(s, None)
            if s > self.cursor:
                if self._track_gaps and s > self.cursor + 1:
                    self._gaps.update({missing: now for missing in range(self.cursor + 1, s)})
                self.cursor = s
        if len(self._gaps) > MAX_GAPS:
            logger.warning("experiment log tail: %d seq gaps; keeping the newest %d", len(self._gaps), MAX_GAPS)
            self._gaps = dict(sorted(self._gaps.items())[-MAX_GAPS:])
        rows = [r for r in rows if r["experiment"] == self.experiment]
        return [_decode_assignment(r) for r in rows] if self.table == "assignments" else rows


# -- export -----------------------------------------------------------------------------------------------------------


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
    from core.cli import fail

    parser = argparse.ArgumentParser(prog="python -m serving.experiment_log", description="the A/B experiment log")
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

"""The experiment log's database: opening it (a SQLite file by default, any SQLAlchemy URL; ``postgresql://`` goes
through psycopg 3), appending a batch in one transaction, and reading it back (``experiments.log_schema`` has the
tables and what each row means).

Ingress replicas append in batches (group commit: a request waits for the batch it joined to be committed, so an
answer is never acknowledged before its row is durable). SQLite runs in WAL mode with ``synchronous=NORMAL``: a
committed batch survives the process that wrote it being killed (not a power cut, which ``synchronous=FULL`` would
add at the cost of an fsync per batch), and readers never block the writers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from core.errors import ConfigError
from experiments.log_schema import (
    ASSIGNMENT_COLUMNS,
    DECISION_COLUMNS,
    DEFAULT_URL,
    READ_CHUNK,
    SCORE_COLUMNS,
    Assignment,
    DecisionRecord,
    Feedback,
    FeedbackStatus,
    LogContents,
    Scores,
    assignment_values,
    assignments,
    decision_values,
    decisions,
    decode_assignment,
    decode_decision,
    decode_feedback,
    feedback,
    feedback_query,
    metadata,
    outcomes,
    score_values,
    scores,
)
from experiments.outcomes import net_return


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


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
        scores_: Sequence[Scores] = (),
    ) -> list[tuple[FeedbackStatus, str | None]]:
        """Write a batch in one transaction. Per feedback, in order: ``("recorded", arm that answered)`` (also for a
        repeat of an already recorded report with the same values: a client's retry), ``("unknown", None)`` (no
        such answered request, in the log or in this batch), ``("duplicate", None)`` (different values were already
        reported) or ``("unscored", None)`` (per-asset returns for a request without scores: one answered before
        full-information scoring, or a failed one).

        Per-asset returns become the answering agent's net return (``envs.accounting``: costs charged on the turnover
        from the weights the request said were held), written to ``feedback`` beside the returns themselves.

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
                    cursor.executemany(self._sql["assignment"], [assignment_values(a) for a in assignments_])
                if scores_:
                    cursor.executemany(self._sql["scores"], [score_values(s) for s in scores_])
                statuses = [self._feedback(cursor, item) for item in feedback_]
                if decisions_:
                    cursor.executemany(self._sql["decision"], [decision_values(d) for d in decisions_])
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

    def _feedback(self, cursor: Any, item: Feedback) -> tuple[FeedbackStatus, str | None]:
        cursor.execute(self._sql["answered"], (item.request_id,))
        found = cursor.fetchone()
        if found is None:
            return ("unknown", None)
        arm, realized, encoded = found[0], item.realized_return, None
        if item.asset_returns is not None:
            cursor.execute(self._sql["scored"], (item.request_id,))
            scored = cursor.fetchone()
            if scored is None:
                return ("unscored", None)
            held, cost_rate, weights = json.loads(scored[0]), scored[1], json.loads(scored[2])[arm]
            realized = net_return(weights, held, item.asset_returns, cost_rate)
            encoded = json.dumps(list(item.asset_returns))
        cursor.execute(self._sql["feedback"], (item.request_id, realized, item.created_at))
        if cursor.rowcount == 1:
            if encoded is not None:
                cursor.execute(self._sql["outcome"], (item.request_id, encoded, item.created_at))
            return ("recorded", arm)
        cursor.execute(self._sql["reported"], (item.request_id,))
        before, returns_before = cursor.fetchone()
        same = before == realized and (encoded is None or returns_before == encoded)
        return ("recorded", arm) if same else ("duplicate", None)

    def last_as_of(self, client_id: str) -> str | None:
        """The latest trading day a client's requests were scored for (``None``: none yet)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(scores.c.as_of)).where(scores.c.client_id == client_id)).scalar()

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
            "scores": insert(scores, SCORE_COLUMNS),
            "outcome": insert(outcomes, ("request_id", "asset_returns", "created_at")),
            "scored": f"SELECT held, cost_rate, weights FROM scores WHERE request_id = {mark}",
            "decision": insert(decisions, DECISION_COLUMNS),
            "feedback": insert(
                feedback, ("request_id", "realized_return", "created_at"), " ON CONFLICT (request_id) DO NOTHING"
            ),
            "answered": f"SELECT arm FROM assignments WHERE request_id = {mark} AND kind = 'answer' AND arm != ''",
            "reported": (
                "SELECT f.realized_return, o.asset_returns FROM feedback f LEFT JOIN outcomes o "
                f"ON o.request_id = f.request_id WHERE f.request_id = {mark}"
            ),
        }

    # -- reading --------------------------------------------------------------------------------------------------

    def decisions(self, experiment: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(decisions).order_by(decisions.c.seq)
        if experiment is not None:
            query = query.where(decisions.c.experiment == experiment)
        with self.engine.connect() as conn:
            return [decode_decision(r._mapping) for r in conn.execute(query)]

    def last_decision(self, experiment: str) -> dict[str, Any] | None:
        query = sa.select(decisions).where(decisions.c.experiment == experiment).order_by(decisions.c.seq.desc())
        with self.engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return None if row is None else decode_decision(row._mapping)

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
        return (decode_assignment(row) for row in self._chunks(query, assignments.c.seq))

    def iter_feedback(self, experiment: str | None = None) -> Iterator[dict[str, Any]]:
        """Feedback rows with the experiment, arms and kind of the request they report on, oldest first."""
        query = feedback_query()
        if experiment is not None:
            query = query.where(assignments.c.experiment == experiment)
        return (decode_feedback(row) for row in self._chunks(query, feedback.c.seq))

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

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for name, table in (
                    ("assignments", assignments),
                    ("feedback", feedback),
                    ("decisions", decisions),
                    ("scores", scores),
                    ("outcomes", outcomes),
                )
            }

    def close(self) -> None:
        with self._write_lock:
            self._drop_writer()
        self.engine.dispose()

"""Tailing the experiment log: the rows of one experiment committed since the last look, by ``seq``.

Tailing by ``seq`` is exact when writers commit in ``seq`` order, as SQLite's one-writer-at-a-time does. Where
transactions commit out of order (PostgreSQL with several writers), a ``seq`` skipped by a tail may appear later:
``Tail`` re-asks for skipped ``seq`` values for ``GAP_RECHECK_S`` seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import sqlalchemy as sa

from experiments.log_schema import READ_CHUNK, assignments, decode_assignment, decode_feedback, feedback, feedback_query
from experiments.log_store import ExperimentLog

logger = logging.getLogger(__name__)

GAP_RECHECK_S = 60.0
MAX_GAPS = 1_000


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
            seq, query = feedback.c.seq, feedback_query()
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
        return (
            [decode_assignment(r) for r in rows] if self.table == "assignments" else [decode_feedback(r) for r in rows]
        )

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

The tables and the records written to them are here; ``experiments.log_store`` writes and reads them,
``experiments.log_tail`` tails them, ``experiments.log_export`` exports them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

DEFAULT_URL = "sqlite:///runs/experiments.db"
READ_CHUNK = 20_000  # rows per read: readers never hold a connection across chunks

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


def assignment_values(a: Assignment) -> tuple:
    return tuple(json.dumps(list(a.weights)) if c == "weights" else getattr(a, c) for c in ASSIGNMENT_COLUMNS)


def decision_values(d: DecisionRecord) -> tuple:
    row = d.row()
    return tuple(row[c] for c in DECISION_COLUMNS)


@dataclass(frozen=True)
class LogContents:
    assignments: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    decisions: list[dict[str, Any]]


def decode_assignment(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["weights"] = json.loads(out["weights"])
    return out


def decode_decision(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("shares", "layout", "config", "state"):
        out[key] = json.loads(out[key])
    return out


def feedback_query() -> sa.Select:
    """Feedback rows with the experiment, arms and kind of the request they report on."""
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

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
- ``scores``: full information, one row per answered ``/allocate``: the trading day it is for (``as_of``), the
  weights the client said it held, the proportional cost rate, and the target weights and model version of every
  deployed agent that could answer it (the arms, the shadow, the routable baselines), the answer among them.
- ``outcomes``: the period's simple return per asset (``/feedback`` with ``asset_returns``), in the agents' asset
  order; with it every scored agent's net return on that request is known. Its ``feedback`` row holds the answering
  agent's net return, so the unpaired statistics see it like a scalar report.
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
scores = sa.Table(
    "scores",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("experiment", sa.String(160), nullable=False, index=True),
    sa.Column("client_id", sa.String(256), nullable=False, index=True),
    sa.Column("as_of", sa.String(10), nullable=False),  # ISO date of the trading day the weights are for
    sa.Column("held", sa.Text, nullable=False),  # JSON weights held before trading
    sa.Column("cost_rate", sa.Float, nullable=False),
    sa.Column("weights", sa.Text, nullable=False),  # JSON agent -> target weights
    sa.Column("versions", sa.Text, nullable=False),  # JSON agent -> model version
    sa.Column("created_at", sa.Float, nullable=False),
)
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, unique=True),
    sa.Column("asset_returns", sa.Text, nullable=False),  # JSON simple returns, the agents' asset order
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
class Scores:
    """Every deployed agent's answer to one ``/allocate`` (written with its ``Assignment``)."""

    request_id: str
    experiment: str
    as_of: str
    held: tuple[float, ...]
    cost_rate: float
    weights: Mapping[str, tuple[float, ...]]
    versions: Mapping[str, str]
    client_id: str = ""
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Feedback:
    """A realised portfolio return (``realized_return``), or the period's return per asset (``asset_returns``, the
    agents' asset order), from which the log computes the answering agent's net return."""

    request_id: str
    realized_return: float | None = None
    asset_returns: tuple[float, ...] | None = None
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


FeedbackStatus = Literal["recorded", "unknown", "duplicate", "unscored"]

# The writer's column order: the tables' own, less the ``seq`` the database assigns.
ASSIGNMENT_COLUMNS = tuple(c.name for c in assignments.columns if c.name != "seq")
DECISION_COLUMNS = tuple(c.name for c in decisions.columns if c.name != "seq")
SCORE_COLUMNS = tuple(c.name for c in scores.columns if c.name != "seq")


def assignment_values(a: Assignment) -> tuple:
    return tuple(json.dumps(list(a.weights)) if c == "weights" else getattr(a, c) for c in ASSIGNMENT_COLUMNS)


def score_values(s: Scores) -> tuple:
    encoded = {
        "held": json.dumps(list(s.held)),
        "weights": json.dumps({name: list(w) for name, w in s.weights.items()}),
        "versions": json.dumps(dict(s.versions)),
    }
    return tuple(encoded[c] if c in encoded else getattr(s, c) for c in SCORE_COLUMNS)


def decision_values(d: DecisionRecord) -> tuple:
    row = d.row()
    return tuple(row[c] for c in DECISION_COLUMNS)


@dataclass(frozen=True)
class LogContents:
    assignments: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    decisions: list[dict[str, Any]]


def _decoded(row: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``row`` with its JSON columns ``keys`` decoded (a null one stays None)."""
    out = dict(row)
    for key in keys:
        if out.get(key) is not None:
            out[key] = json.loads(out[key])
    return out


def decode_assignment(row: Mapping[str, Any]) -> dict[str, Any]:
    return _decoded(row, ("weights",))


def decode_decision(row: Mapping[str, Any]) -> dict[str, Any]:
    return _decoded(row, ("shares", "layout", "config", "state"))


def feedback_query() -> sa.Select:
    """Feedback rows with the experiment, arms and kind of the request they report on, and where the client sent
    per-asset returns, those and the request's scores (else null)."""
    return (
        sa.select(
            feedback.c.seq,
            feedback.c.request_id,
            feedback.c.realized_return,
            feedback.c.created_at,
            assignments.c.experiment,
            assignments.c.arm,
            assignments.c.routed_arm,
            assignments.c.forced,
            outcomes.c.asset_returns,
            scores.c.as_of,
            scores.c.held,
            scores.c.cost_rate,
            scores.c.weights.label("scores"),
        )
        .join(assignments, assignments.c.request_id == feedback.c.request_id)
        .outerjoin(outcomes, outcomes.c.request_id == feedback.c.request_id)
        .outerjoin(scores, scores.c.request_id == feedback.c.request_id)
    )


def decode_feedback(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``feedback_query`` row with its JSON decoded (``asset_returns``, ``held``, ``scores`` stay None when the
    report was a scalar)."""
    return _decoded(row, ("asset_returns", "held", "scores"))

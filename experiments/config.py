"""An A/B experiment's configuration: its arms, routing, ramp, statistics and guardrails (``ExperimentConfig``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config import FrozenConfig
from experiments.paired import DEFAULT_MIN_DAYS, DEFAULT_TUNING_DAYS
from experiments.sequential import DEFAULT_TUNING_N
from experiments.srm import SRM_ALPHA


class Guardrails(FrozenConfig):
    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="errors per request above this trip it")
    max_latency_p99_ms: float = Field(default=250.0, gt=0, description="latency p99 above this trips it")
    max_drawdown: float = Field(
        default=0.2, gt=0, le=1, description="drawdown of the arm's per-period mean feedback returns, compounded"
    )
    drawdown_period_s: float = Field(
        default=86_400.0, gt=0, description="the period whose mean feedback return is one step of that wealth path"
    )
    min_period_feedback: int = Field(
        default=20, ge=1, description="feedback returns the open period needs before its mean counts in the drawdown"
    )
    min_requests: int = Field(default=50, ge=1, description="requests an arm needs before its rates are judged")
    consistency: bool = Field(
        default=False,
        description="roll back an arm whose live daily paired difference to the gate's baseline is inconsistent "
        "with the distribution the promotion gate measured on validation (experiments.consistency); needs that "
        "distribution for every arm (registry.json, written by the gate)",
    )


class Ramp(FrozenConfig):
    steps: tuple[float, ...] = Field(default=(0.05, 0.25, 0.5, 1.0), description="challenger shares, in order")
    min_feedback: int = Field(default=200, ge=1, description="feedback returns at a step before the next")

    @model_validator(mode="after")
    def _increasing(self) -> Ramp:
        if not self.steps or any(not 0 < s <= 1 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps: increasing shares in (0, 1], got {list(self.steps)}")
        return self


class Hedge(FrozenConfig):
    """``routing: hedge``: shares follow the arms' net log wealth by exponential weights (full information: every
    arm's return is observed on every request, so no traffic is spent exploring)."""

    daily_range: float = Field(
        default=0.1,
        gt=0,
        description="bound on the spread of the arms' daily net log growth; the learning rate is "
        "sqrt(8 ln K / days) / daily_range (Cesa-Bianchi and Lugosi 2006, theorem 2.3)",
    )
    floor: float = Field(
        default=0.0, ge=0, lt=1, description="least share per live arm: an operational canary, not needed to learn"
    )


class ExperimentConfig(FrozenConfig):
    # The log's experiment column holds name-<8 hex> in 160 characters, which PostgreSQL enforces (SQLite does not).
    name: str = Field(default="default", min_length=1, max_length=128, description="the experiment's name in the log")
    control: str
    challengers: tuple[str, ...] = ()
    routing: Literal["fixed", "ramp", "thompson", "hedge"] = "fixed"
    split: dict[str, float] | None = Field(default=None, description="routing fixed: the shares (default equal)")
    ramp: Ramp = Ramp()
    min_share: float = Field(default=0.05, ge=0, lt=1, description="routing thompson: the least share of an arm")
    bandit_every_feedback: int = Field(
        default=100,
        ge=1,
        description="routing thompson: new feedback returns between re-estimates of the shares (each move is a "
        "new split version, so it is not re-drawn on every poll)",
    )
    hedge: Hedge = Hedge()
    alpha: float = Field(default=0.05, gt=0, lt=1)
    tuning_n: float = Field(
        default=DEFAULT_TUNING_N, gt=0, description="feedback count the unpaired (scalar feedback) sequence is tuned to"
    )
    tuning_days: float = Field(
        default=DEFAULT_TUNING_DAYS, gt=0, description="trading days the paired, day-clustered sequence is tuned to"
    )
    min_days: int = Field(
        default=DEFAULT_MIN_DAYS, ge=2, description="closed trading days before the paired sequence is read"
    )
    srm_alpha: float = Field(default=SRM_ALPHA, gt=0, lt=1)
    guardrails: Guardrails = Guardrails()

    @model_validator(mode="after")
    def _arms(self) -> ExperimentConfig:
        if self.control in self.challengers:
            raise ValueError(f"challengers: the control '{self.control}' cannot also be a challenger")
        if self.routing == "hedge" and not self.challengers:
            raise ValueError("routing: hedge needs at least two arms (a control and a challenger)")
        if self.routing == "hedge" and self.hedge.floor * len(self.arms) > 1:
            raise ValueError(f"hedge.floor: {self.hedge.floor} for {len(self.arms)} arms leaves no room to choose")
        if self.split is not None and set(self.split) - set(self.arms):
            raise ValueError(f"split: names {sorted(set(self.split) - set(self.arms))} are not arms of the experiment")
        return self

    @property
    def arms(self) -> tuple[str, ...]:
        return (self.control, *self.challengers)

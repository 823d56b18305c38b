"""An A/B experiment's configuration: its arms, routing, ramp, statistics and guardrails (``ExperimentConfig``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config import FrozenConfig
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


class Ramp(FrozenConfig):
    steps: tuple[float, ...] = Field(default=(0.05, 0.25, 0.5, 1.0), description="challenger shares, in order")
    min_feedback: int = Field(default=200, ge=1, description="feedback returns at a step before the next")

    @model_validator(mode="after")
    def _increasing(self) -> Ramp:
        if not self.steps or any(not 0 < s <= 1 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps: increasing shares in (0, 1], got {list(self.steps)}")
        return self


class ExperimentConfig(FrozenConfig):
    # The log's experiment column holds name-<8 hex> in 160 characters, which PostgreSQL enforces (SQLite does not).
    name: str = Field(default="default", min_length=1, max_length=128, description="the experiment's name in the log")
    control: str
    challengers: tuple[str, ...] = ()
    routing: Literal["fixed", "ramp", "thompson"] = "fixed"
    split: dict[str, float] | None = Field(default=None, description="routing fixed: the shares (default equal)")
    ramp: Ramp = Ramp()
    min_share: float = Field(default=0.05, ge=0, lt=1, description="routing thompson: the least share of an arm")
    bandit_every_feedback: int = Field(
        default=100,
        ge=1,
        description="routing thompson: new feedback returns between re-estimates of the shares (each move is a "
        "new split version, so it is not re-drawn on every poll)",
    )
    alpha: float = Field(default=0.05, gt=0, lt=1)
    tuning_n: float = Field(default=DEFAULT_TUNING_N, gt=0, description="feedback count the sequence is tuned to")
    srm_alpha: float = Field(default=SRM_ALPHA, gt=0, lt=1)
    guardrails: Guardrails = Guardrails()

    @model_validator(mode="after")
    def _arms(self) -> ExperimentConfig:
        if self.control in self.challengers:
            raise ValueError(f"challengers: the control '{self.control}' cannot also be a challenger")
        if self.split is not None and set(self.split) - set(self.arms):
            raise ValueError(f"split: names {sorted(set(self.split) - set(self.arms))} are not arms of the experiment")
        return self

    @property
    def arms(self) -> tuple[str, ...]:
        return (self.control, *self.challengers)

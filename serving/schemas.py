"""HTTP request and response bodies (pydantic): FastAPI validates with them and publishes them at ``/docs``."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_WINDOW = 5_000  # closes per asset in one request
MAX_ASSETS = 64

_STRICT = ConfigDict(extra="forbid")

Finite = Annotated[float, Field(allow_inf_nan=False)]


class AllocateRequest(BaseModel):
    """Recent closes per asset (oldest first) and, optionally, the weights held now (default equal)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "prices": {"STOCK": [100.0] * 61, "BOND": [100.0] * 61},
                "weights": {"STOCK": 0.5, "BOND": 0.5},
                "client_id": "c-42",
            }
        },
    )
    prices: dict[str, Annotated[list[Finite], Field(min_length=2, max_length=MAX_WINDOW)]] = Field(
        min_length=1,
        max_length=MAX_ASSETS,
        description="asset -> closes, oldest first; at least the agent's closes_needed (see /agents)",
    )
    weights: dict[str, Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]] | None = Field(
        default=None, max_length=MAX_ASSETS, description="asset -> weight held now; must sum to 1 (default equal)"
    )
    client_id: str | None = Field(default=None, max_length=200, description="sticky A/B assignment key")

    @field_validator("prices")
    @classmethod
    def _positive(cls, prices: dict[str, list[float]]) -> dict[str, list[float]]:
        for asset, closes in prices.items():
            if any(c <= 0 for c in closes):
                raise ValueError(f"closes of '{asset}' must be positive")
        lengths = {len(c) for c in prices.values()}
        if len(lengths) > 1:
            raise ValueError(f"every asset needs the same number of closes, got {sorted(lengths)}")
        return prices

    @field_validator("weights")
    @classmethod
    def _sum_to_one(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        if weights is not None and not math.isclose(sum(weights.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"weights must sum to 1, got {sum(weights.values()):.6f}")
        return weights


class AllocateResponse(BaseModel):
    weights: dict[str, float] = Field(description="target weights: non-negative, sum to 1")
    agent: str = Field(description="the agent that answered (after any fallback)")
    model_version: str = Field(description="content hash prefix of the agent's exported model, or 'baseline'")
    request_id: str
    fallback: bool = Field(default=False, description="true when the routed agent failed and another answered")


class PredictRequest(BaseModel):
    model_config = _STRICT
    observation: list[Finite] = Field(
        min_length=1, max_length=100_000, description="raw observation vector (envs.features layout)"
    )


class PredictResponse(BaseModel):
    action: list[float] | int
    weights: dict[str, float]
    agent: str
    model_version: str
    request_id: str


class FeedbackRequest(BaseModel):
    model_config = _STRICT
    request_id: str = Field(min_length=1, max_length=100)
    realized_return: float = Field(
        gt=-1.0, lt=100.0, allow_inf_nan=False, description="portfolio simple return realised"
    )


class FeedbackResponse(BaseModel):
    request_id: str
    agent: str


class AgentDescription(BaseModel):
    name: str
    kind: str = Field(description="'rl' for an exported policy, 'baseline' for a classical strategy")
    algorithm: str
    model_version: str
    content_hash: str | None
    traffic_weight: float
    shadow: bool
    assets: list[str]
    closes_needed: int = Field(description="fewest closes per asset /allocate accepts")
    validation: dict[str, float] | None


class HealthResponse(BaseModel):
    status: str
    agents: dict[str, str]

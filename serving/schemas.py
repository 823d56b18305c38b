"""HTTP request and response bodies (pydantic): FastAPI validates with them and publishes them at ``/docs``."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_WINDOW = 5_000  # closes per asset in one request
MAX_ASSETS = 512  # assets in one request (serving.http.MAX_BODY_BYTES holds 300 closes of each)

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
                "as_of": "2026-12-04",
            }
        },
    )
    prices: dict[str, Annotated[list[Finite], Field(min_length=2, max_length=MAX_WINDOW)]] = Field(
        min_length=1,
        max_length=MAX_ASSETS,
        description=f"asset -> closes, oldest first; at least the agent's closes_needed (see /agents); at most "
        f"{MAX_ASSETS} assets: the agent's own (its assets in /agents), or any others for an agent whose transfer "
        "is null",
    )
    weights: dict[str, Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]] | None = Field(
        default=None, max_length=MAX_ASSETS, description="asset -> weight held now; must sum to 1 (default equal)"
    )
    client_id: str | None = Field(default=None, max_length=200, description="sticky A/B assignment key")
    as_of: dt.date | None = Field(
        default=None,
        description="the trading day the weights are for (ISO date; default the server's UTC date): the unit of the "
        "paired A/B statistics; a client's requests may not go back in time",
    )

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
    """What a request's period earned: per asset (``asset_returns``, preferred: every agent is then scored on it,
    paired) or the portfolio's own return (``realized_return``: only the answering agent, unpaired). One of them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"request_id": "3f2a...", "asset_returns": {"STOCK": 0.012, "BOND": -0.003}}},
    )
    request_id: str = Field(min_length=1, max_length=100)
    realized_return: float | None = Field(
        default=None, gt=-1.0, lt=100.0, allow_inf_nan=False, description="portfolio simple return realised"
    )
    asset_returns: dict[str, Annotated[float, Field(gt=-1.0, lt=100.0, allow_inf_nan=False)]] | None = Field(
        default=None,
        max_length=MAX_ASSETS,
        description="asset -> simple return over the period the weights were held (close to next close), every "
        "asset of the request",
    )

    @field_validator("asset_returns")
    @classmethod
    def _some(cls, returns: dict[str, float] | None) -> dict[str, float] | None:
        if returns is not None and not returns:
            raise ValueError("asset_returns: name every asset of the request")
        return returns


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
    module_kind: str | None = Field(
        default=None, description="an RL agent's module: mlp (sized for its assets) or asset_shared; null: a baseline"
    )
    transfer: str | None = Field(
        default=None,
        description="null when /allocate takes any assets for this agent (in the request's order); else why it "
        "allocates only its own assets",
    )


class HealthResponse(BaseModel):
    status: str
    agents: dict[str, str]


# -- A/B statistics and the admin API ---------------------------------------------------------------------------------


class Latency(BaseModel):
    p50: float = Field(description="median ingress latency of the arm's answered requests (ms)")
    p95: float = Field(description="95th percentile (ms)")
    p99: float = Field(description="99th percentile (ms), the latency guardrail's figure")


class ArmStatistics(BaseModel):
    share: float = Field(description="the arm's share of routed traffic now")
    requests: int = Field(description="requests the split routed to the arm (X-Agent requests are not counted)")
    errors: int = Field(description="of those, requests on which a call to the arm failed (retried or fallen back)")
    error_rate: float | None = Field(description="errors / requests; the error-rate guardrail's figure")
    latency_ms: Latency | None = Field(description="latency of the arm's answered requests; null before any")
    feedback: int = Field(description="realised returns reported for requests the arm answered")
    mean_return: float | None = Field(description="mean realised return of those")
    std_return: float | None = Field(description="their standard deviation (null below 2)")
    drawdown: float = Field(
        description="drawdown of the arm's average client: per-period mean returns compounded "
        "(guardrails.drawdown_period_s); the drawdown guardrail's figure"
    )
    stopped: str | None = Field(description="why the arm was rolled back, or null")


class SequentialInterval(BaseModel):
    lower: float = Field(description="lower end of the always-valid 1 - alpha confidence sequence of the difference")
    upper: float = Field(description="upper end")
    p_value: float = Field(
        description="always-valid p-value (running minimum over looks): valid however often it is read, and "
        "whenever the experiment stops"
    )


class WelchTest(BaseModel):
    t_statistic: float = Field(description="the mean difference over its standard error")
    p_value: float = Field(description="valid only if read once, at a sample size fixed in advance")


class Comparison(BaseModel):
    challenger: str = Field(description="the arm compared")
    control: str = Field(description="the arm it is compared with")
    mean_difference: float = Field(description="challenger minus control, mean realised return")
    sequential: SequentialInterval = Field(
        description="normal-mixture confidence sequence (Howard et al. 2021), the test the verdict and the "
        "experiment's decisions use"
    )
    fixed_horizon_welch: WelchTest | None = Field(
        description="Welch's t-test, for reference only: peeking at it inflates false positives (null below 2 "
        "returns per arm)"
    )
    verdict: str = Field(description="the sequential test's reading, in words")


class PairedComparison(BaseModel):
    challenger: str = Field(description="the arm compared")
    control: str = Field(description="the arm it is compared with")
    days: int = Field(description="closed trading days with per-asset feedback on which both were scored")
    mean_daily_difference: float | None = Field(
        description="challenger minus control, mean over days of the day's mean net log growth difference"
    )
    daily_std: float | None = Field(description="standard deviation of the daily difference (null below 2 days)")
    sequential: SequentialInterval = Field(
        description="always-valid confidence sequence over days (tuning_days): the test the decisions use once "
        "per-asset feedback has come"
    )
    variance_ratio: float | None = Field(
        description="variance of the paired daily difference over the unpaired one, Var(a - b) / (Var(a) + Var(b))"
    )
    days_to_verdict: int | None = Field(
        description="days a verdict would need if the observed edge and spread held; null when it never would"
    )
    verdict: str = Field(description="the paired test's reading, in words, with the forecast while undecided")


class FullInformation(BaseModel):
    requests: int = Field(description="requests with per-asset feedback, every deployed agent scored on each")
    closed_days: int = Field(description="trading days closed (a later day has been reported)")
    latest_day: str | None = Field(description="the latest trading day reported (open)")


class ConsistencyReading(BaseModel):
    baseline: str = Field(description="the gate's baseline the differences are to")
    days: int = Field(description="closed days tested")
    live_mean: float | None = Field(description="mean live daily paired difference to the baseline")
    live_std: float | None = Field(description="its standard deviation (null below 2 days)")
    validation_mean: float = Field(description="the mean the gate measured on validation")
    validation_std: float = Field(description="the spread the gate measured on validation")
    validation_days: int = Field(description="validation days (path-days) behind those")
    validation_std_band: list[float] = Field(
        description="the null's range of daily spreads: validation's 20-day windows, 1st to 99th percentile"
    )
    e_value: float = Field(description="the test martingale: inconsistent once it reaches threshold")
    threshold: float = Field(description="1 / alpha")
    flagged: bool = Field(description="true once the e-value reached the threshold (the arm is rolled back)")
    reading: str = Field(description="the test's reading, in words")


class SampleRatioStatistics(BaseModel):
    p_value: float = Field(
        description="chi-square test of routed units (a client id at its first request, or a request without one) "
        "against the shares they were routed under"
    )
    chi_square: float = Field(description="the test's statistic")
    mismatch: bool = Field(description="p_value < alpha: assignment is broken and no comparison can be trusted")
    alpha: float = Field(description="the mismatch threshold (0.001 by default)")
    observed: dict[str, int] = Field(description="units routed per arm")
    expected: dict[str, float] = Field(description="units expected per arm from the shares at each assignment")


class ShadowStatistics(BaseModel):
    requests: int = Field(description="shadow evaluations run")
    latency_p50_ms: float = Field(description="median latency of the shadow calls (ms)")


class ABStatsResponse(BaseModel):
    experiment: str = Field(description="the experiment's key: its name and a hash of its config")
    name: str = Field(description="the experiment's name (ExperimentConfig.name)")
    routing: str = Field(description="fixed, ramp, thompson or hedge")
    control: str = Field(description="the arm every challenger is compared with")
    alpha: float = Field(description="level of the sequential test")
    split: dict[str, float] = Field(description="arms with traffic now and their shares")
    split_version: int = Field(description="grows with every decision; each logged request names the version")
    shadow: str | None = Field(description="the agent evaluated on every request but never returned, or null")
    promoted: str | None = Field(description="the arm that won all traffic, or null")
    arms: dict[str, ArmStatistics] = Field(description="per arm of the experiment")
    comparisons: list[Comparison] = Field(
        description="each challenger against the control, unpaired by request (scalar feedback)"
    )
    paired: list[PairedComparison] = Field(
        description="each challenger against the control, paired by trading day (per-asset feedback)"
    )
    full_information: FullInformation = Field(description="how much per-asset feedback the paired statistics have")
    consistency: dict[str, ConsistencyReading] = Field(
        description="per arm, with guardrails.consistency: live behaviour against its validation distribution"
    )
    sample_ratio: SampleRatioStatistics = Field(description="is assignment what the split says it should be?")
    shadows: dict[str, ShadowStatistics] = Field(description="per shadow agent")
    decisions: list[DecisionView] = Field(description="the experiment's latest decisions (up to 50), oldest first")


class DecisionView(BaseModel):
    split_version: int = Field(description="the split version the decision made")
    kind: str = Field(description="start, split, ramp, promote, rollback, bandit, hedge, consistency, resume or deploy")
    arm: str | None = Field(description="the arm it concerns, or null")
    reason: str = Field(description="why, in words")
    source: str = Field(description="engine (the experiment's own rule), admin (the admin API) or deploy")
    shares: dict[str, float] = Field(description="the shares after it")
    created_at: float = Field(description="Unix time")


class ExperimentView(BaseModel):
    experiment: str
    config: dict = Field(description="the experiment config (ExperimentConfig)")
    split_version: int
    shares: dict[str, float]
    layout: dict[str, list[list[float]]] = Field(description="arm -> ranges of the client hash in [0, 1)")
    shadow: str | None
    state: dict = Field(description="rollbacks, ramp steps, promotion, whether automatic decisions are paused")
    decisions: list[DecisionView]


class SplitRequest(BaseModel):
    model_config = _STRICT
    shares: dict[str, Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] = Field(
        description="arm -> share (normalised; arms left out get 0)", min_length=1
    )
    reason: str = Field(default="operator", max_length=500)


class ArmRequest(BaseModel):
    model_config = _STRICT
    arm: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="operator", max_length=500)


class RollbackRequest(BaseModel):
    model_config = _STRICT
    arm: str | None = Field(default=None, max_length=128, description="the challenger; null: every challenger")
    reason: str = Field(default="operator", max_length=500)


class RampRequest(BaseModel):
    model_config = _STRICT
    arm: str | None = Field(default=None, max_length=128, description="the challenger to move (with step)")
    step: int | None = Field(default=None, ge=0, description="an index of ramp.steps")
    resume: bool = Field(default=False, description="let automatic ramp steps and bandit moves happen again")
    reason: str = Field(default="operator", max_length=500)

    @model_validator(mode="after")
    def _one_move(self) -> RampRequest:
        if self.resume and (self.arm is not None or self.step is not None):
            raise ValueError("resume takes no arm or step")
        if not self.resume and (self.arm is None or self.step is None):
            raise ValueError("give arm and step (an index of ramp.steps), or resume: true")
        return self


class RoutingView(BaseModel):
    experiment: str
    split_version: int
    shares: dict[str, float]
    decision: str = Field(description="what was recorded")


ABStatsResponse.model_rebuild()

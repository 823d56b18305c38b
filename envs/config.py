"""Typed, validated configuration of the market data and the environment (one pydantic model each), and
``configs/env.yaml``, the env config every command starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.config import CONFIG_DIR, FrozenConfig, load_yaml, parse_config
from quant.registry import BASELINES, ROUTABLE, BaselinesConfig, closes_needed

ENV_YAML = CONFIG_DIR / "env.yaml"


class DataConfig(FrozenConfig):
    """Where prices come from and how they are split.

    ``path: null`` selects the built-in synthetic market (``synthetic_*`` fields); otherwise a wide CSV.
    """

    path: str | None = None
    assets: tuple[str, ...] | None = None
    extra_columns: tuple[str, ...] = ()
    rf_column: str | None = Field(default=None, description="extra column holding the annual risk-free rate")
    ffill_limit: int = Field(default=5, ge=0)
    cash: bool = Field(default=False, description="add a CASH asset earning the risk-free rate (0 without rf_column)")
    synthetic_seed: int = 7
    synthetic_years: float = Field(default=25.0, gt=0.5, le=200.0)
    synthetic_assets: int = Field(default=4, ge=1, le=200)
    synthetic_regimes: int = Field(default=3, ge=1, le=3)
    train_end: str | float = 0.7
    validation_end: str | float = 0.85

    @model_validator(mode="after")
    def _rf_is_an_extra(self) -> DataConfig:
        if self.rf_column is not None and self.rf_column not in self.extra_columns:
            raise ValueError(f"rf_column '{self.rf_column}' must also be listed in extra_columns")
        return self


class RegimeParams(FrozenConfig):
    """A fitted (or true) regime model's parameters (``envs.regimes.RegimeModel``), carried in the env config so that
    every process and every exported model filters with the same law."""

    source: str = Field(description="'fitted' (on which train split) or 'true law'")
    transition: list[list[float]] = Field(description="(K, K) transition matrix, rows sum to 1")
    means: list[list[float]] = Field(description="(K, A) mean daily log returns")
    covariances: list[list[list[float]]] = Field(description="(K, A, A) daily log-return covariances")

    @model_validator(mode="after")
    def _consistent(self) -> RegimeParams:
        k = len(self.transition)
        a = len(self.means[0]) if self.means else 0
        if k < 1 or any(len(row) != k for row in self.transition):
            raise ValueError(f"transition must be a square K x K matrix, got {[len(r) for r in self.transition]} rows")
        if any(abs(sum(row) - 1.0) > 1e-6 or min(row) < 0 for row in self.transition):
            raise ValueError("every transition row must be non-negative and sum to 1")
        if len(self.means) != k or any(len(m) != a for m in self.means):
            raise ValueError(f"means must be K x A = {k} x {a}")
        if len(self.covariances) != k or any(len(c) != a or any(len(r) != a for r in c) for c in self.covariances):
            raise ValueError(f"covariances must be K x A x A = {k} x {a} x {a}")
        return self


class RegimeConfig(FrozenConfig):
    """The regime model behind ``observe_regimes`` and the regime strategies (``envs.regimes``)."""

    n_regimes: int | Literal["bic"] = Field(
        default="bic",
        description="regimes of the fitted model, or 'bic': the K in 1..max_regimes with the lowest BIC on train",
    )
    max_regimes: int = Field(default=4, ge=1, le=8)
    window_days: int = Field(
        default=130,
        ge=5,
        le=2000,
        description="days of returns the observed filter runs over from the stationary distribution; the built-in "
        "market's filter forgets its start within 65 (README: Regimes), so 130 leaves a margin of 2",
    )
    law: Literal["fitted", "true"] = Field(
        default="fitted",
        description="'fitted': EM on the train split (any data); 'true': a synthetic market's true law (an ablation)",
    )
    covariance: Literal["auto", "full", "tied", "diag", "factor"] = Field(
        default="auto",
        description="each regime's covariance (quant.regime_em): full, tied (one for all regimes), diag, factor "
        "(principal-component factors and residual variances), or 'auto': the one with the lowest BIC, chosen with "
        "the number of regimes, among those with days enough for their parameters (full where the assets are few)",
    )
    seed: int = Field(default=0, description="EM's initialisation seed (the fit is deterministic given it)")
    iterations: int = Field(default=200, ge=1, le=10_000, description="most EM iterations per fit")
    restarts: int = Field(
        default=4,
        ge=1,
        le=50,
        description="EM starts per number of regimes (seeds seed, seed+1, ...): the best is kept",
    )
    model: RegimeParams | None = Field(
        default=None, description="the model itself, filled in by training before the first step; null: fit on use"
    )

    @field_validator("n_regimes")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 8:
            raise ValueError(f"n_regimes must be 'bic' or between 1 and 8, got {value}")
        return value


RESIDUAL_BASES = ("none", *ROUTABLE)  # the strategies the server can decide from closes alone


class PolicyConfig(FrozenConfig):
    """A residual policy (``envs.bases``): the agent tilts a classical strategy's target weights instead of choosing
    weights from nothing, ``w ∝ base ⊙ exp(tilt_scale · a)`` with ``a`` in ``[-1, 1]^K``, so its zero action is the
    base. The base is the registry's strategy (``quant.registry``), decided every day from the closes seen so far."""

    base: Literal[RESIDUAL_BASES] = Field(  # type: ignore[valid-type]
        default="none",
        description="none (the action is the portfolio), or the routable classical strategy the action tilts",
    )
    tilt_scale: float = Field(default=1.0, gt=0.0, le=10.0, description="w ∝ base · exp(tilt_scale · a), a in [-1, 1]")
    tilt_budget: float | None = Field(
        default=None,
        gt=0.0,
        lt=2.0,
        description="the most L1 distance from the base a tilt may take (a larger one is shrunk towards the base); "
        "null: no cap (2 is the simplex's diameter)",
    )
    lookback_days: int = Field(default=252, ge=20, le=5000, description="estimation window of an estimated base")

    @property
    def baselines(self) -> BaselinesConfig:
        """The registry's settings the base is built with (its lookback; it decides daily, with no schedule)."""
        return BaselinesConfig(lookback_days=self.lookback_days)


class UniverseConfig(FrozenConfig):
    """Which of the data's assets an episode trades (``envs.universe``)."""

    sample_assets: int | None = Field(
        default=None,
        ge=1,
        description="train split only: each episode trades K of the data's N assets, drawn uniformly without "
        "replacement in a random order from the env's generator, so one asset-shared agent (model.kind: "
        "asset_shared) learns from every asset's history; validation and test trade all N; null: all N always",
    )


SUBSET_BASES = ("none", "equal_weight")  # bases whose weights over a subset are their universe's, renormalised


class EnvConfig(FrozenConfig):
    """Everything ``PortfolioEnv`` needs. Units are in the names: days, bps."""

    data: DataConfig = DataConfig()
    split: Literal["train", "validation", "test", "all"] = Field(
        default="train", description="'all' = every day after the warm-up, for data never used in training"
    )
    window_days: int = Field(
        default=20, ge=0, le=1000, description="days of past log returns observed per asset (0: none, volatility only)"
    )
    vol_window_days: int = Field(default=60, ge=2, le=1000, description="days in the rolling volatility feature")
    log_volatility: bool = Field(default=False, description="observe the log of the rolling volatility (envs.features)")
    observe_extras: bool = Field(default=False, description="append extra columns' values at day t to the observation")
    observe_regimes: bool = Field(
        default=False, description="append the regime probabilities filtered from past returns (envs.regimes)"
    )
    regimes: RegimeConfig = RegimeConfig()
    action_mode: Literal["continuous", "discrete"] = "continuous"
    continuous_map: Literal["softmax", "softmax_delta", "clip"] = "softmax"
    softmax_scale: float = Field(
        default=3.0, gt=0.0, description="logits (or their change) = scale * action, action in [-1, 1]"
    )
    grid_steps: int = Field(default=4, ge=1, le=100, description="discrete weights are multiples of 1/grid_steps")
    trade_rate: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="trade this fraction of the way from the weights held to the action's target (partial adjustment)",
    )
    discrete_hold: bool = Field(default=False, description="discrete: action 0 keeps the weights held (no trade)")
    discrete_actions: Literal["grid", "factored"] = Field(
        default="grid",
        description="discrete: 'grid' one index into the simplex grid (or 2K + 1 tilts with a base); 'factored' one "
        "level per asset, MultiDiscrete([factored_levels] * K), for branching DQN (envs.actions)",
    )
    factored_levels: int = Field(
        default=5, ge=2, le=101, description="factored: levels per asset, tilts 2 l / (L - 1) - 1 in [-1, 1]"
    )
    cost_bps: float = Field(default=10.0, ge=0.0, le=10_000.0, description="proportional cost per unit of turnover")
    reward: Literal["log_growth", "excess_log_growth", "differential_sharpe", "mean_variance"] = "log_growth"
    reward_scale: float = Field(
        default=100.0, gt=0.0, description="reward multiplier (log growth in percent by default)"
    )
    risk_aversion: float = Field(default=1.0, ge=0.0, description="mean_variance: reward = R - risk_aversion/2 * R^2")
    sharpe_eta: float = Field(default=0.01, gt=0.0, lt=1.0, description="differential_sharpe: moment adaptation rate")
    episode_days: int | None = Field(default=252, ge=1, description="steps per episode; null = the whole split")
    random_start: bool = Field(default=True, description="start episodes at a random day of the split")
    train_paths: Literal["split", "law", "auto", "fitted", "bootstrap"] = Field(
        default="split",
        description="train split only: 'split' plays the data's train split; 'law' draws a fresh path of a synthetic "
        "market's true law every episode (built-in market, or a CSV with its .params.json); 'auto' is 'law' when the "
        "data has a known law that fits (all its assets, no cash or extras) and 'split' otherwise; 'fitted' draws a "
        "fresh path of the regime model fitted on the train split (any data); 'bootstrap' a stationary block "
        "bootstrap of the train split's daily returns (Politis and Romano 1994)",
    )
    bootstrap_block_days: int = Field(
        default=20, ge=1, le=1000, description="train_paths bootstrap: mean block length in days (geometric)"
    )

    policy: PolicyConfig = Field(
        default=PolicyConfig(), description="residual policy: the classical base the action tilts (none: no base)"
    )
    universe: UniverseConfig = Field(
        default=UniverseConfig(), description="the assets each training episode trades (sample_assets)"
    )

    validation_paths: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="with training on a synthetic law: validate on this many fresh paths of the law (each as long as "
        "the validation split, from seeds kept for validation) instead of the one validation split; 0 = the split",
    )

    @property
    def warmup_days(self) -> int:
        """Days of returns the features need before the first decision (``envs.features.warmup_days``)."""
        regime_window = self.regimes.window_days if self.observe_regimes else 0
        return max(self.window_days, self.vol_window_days, regime_window, self.base_warmup_days)

    @property
    def base_warmup_days(self) -> int:
        """Days of returns the residual base reads before its first decision (``quant.registry.closes_needed`` - 1)."""
        if self.policy.base == "none":
            return 0
        return closes_needed(self.policy.base, self.policy.baselines, self.regimes.window_days) - 1

    @property
    def base_needs_regimes(self) -> bool:
        return self.policy.base != "none" and BASELINES[self.policy.base].needs_regimes

    @model_validator(mode="after")
    def _residual_fits_the_action_map(self) -> EnvConfig:
        if self.policy.base == "none":
            return self
        if self.action_mode == "continuous" and self.continuous_map != "softmax":
            raise ValueError(
                f"policy.base '{self.policy.base}': a residual action tilts the base's weights, so continuous_map "
                f"must be 'softmax' (the default), not '{self.continuous_map}'"
            )
        if self.action_mode == "discrete" and self.discrete_hold:
            raise ValueError(
                f"policy.base '{self.policy.base}': discrete_hold cannot be combined with a base (the zero tilt, "
                "action 0, follows the base; trade_rate slows trading instead)"
            )
        return self

    @model_validator(mode="after")
    def _hold_is_a_grid_action(self) -> EnvConfig:
        if self.action_mode == "discrete" and self.discrete_actions == "factored" and self.discrete_hold:
            raise ValueError(
                "discrete_hold: the hold action is a grid index; factored actions slow trading with trade_rate instead"
            )
        return self

    @model_validator(mode="after")
    def _sampled_base_is_per_asset(self) -> EnvConfig:
        if self.universe.sample_assets is not None and self.policy.base not in SUBSET_BASES:
            raise ValueError(
                f"universe.sample_assets: the residual base '{self.policy.base}' decides over the whole universe at "
                "once, so its weights on a sampled subset are not its decision over that subset; sample with "
                f"policy.base {' or '.join(repr(b) for b in SUBSET_BASES)}"
            )
        return self

    @model_validator(mode="after")
    def _law_paths_have_a_length(self) -> EnvConfig:
        if self.train_paths != "split" and self.episode_days is None:
            raise ValueError(
                f"train_paths '{self.train_paths}' draws paths of episode_days days: episode_days cannot be null"
            )
        return self

    @field_validator("data", mode="before")
    @classmethod
    def _data_from_mapping(cls, value: Any) -> Any:
        return {} if value is None else value


def load_env_config(path: str | Path = ENV_YAML) -> EnvConfig:
    """``configs/env.yaml`` (or ``path``) as an ``EnvConfig``."""
    return parse_config(EnvConfig, load_yaml(path), where=str(path))


def with_data(config: EnvConfig, path: str | Path | None) -> EnvConfig:
    """``config`` reading its prices from the CSV at ``path`` (made absolute); ``None`` keeps the config's data."""
    if path is None:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"path": str(Path(path).resolve())})})

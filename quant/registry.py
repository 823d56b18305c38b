"""The one registry of classical strategies: each baseline's name, parameters and causal decision function, used by
backtests, the held-out comparison, the report, the walk-forward and the server (and, as residual bases, by the env).

A baseline is built by name with ``make_baseline(name, assets, config, regimes, regime_window_days)``; its
parameters (lookback, rebalance period, fixed mix) come from one ``BaselinesConfig`` (``configs/evaluation.yaml``,
section ``baselines``), and ``regime_growth`` filters over ``regime_window_days`` returns, the window the env's
regime observations use. ``closes_needed`` is how many closes its decision reads, so a caller that posts that many
(the server) decides exactly as a backtest with the whole history does. ``ROUTABLE``: the baselines the server can
decide from a request's closes alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import Field

from core.config import FrozenConfig
from core.errors import ConfigError
from quant.regimes import RegimeModel
from quant.strategies import (
    Baseline,
    BuyAndHold,
    EqualWeight,
    FilteredGrowth,
    FixedMix,
    GrowthOptimal,
    MeanVariance,
    MinimumVariance,
    RiskParity,
    fixed_mix_weights,
)

DEFAULT_REGIME_WINDOW_DAYS = 130  # envs.config.RegimeConfig's default: the filter has forgotten its start by then


class BaselinesConfig(FrozenConfig):
    """Shared settings of the classical baselines (``configs/evaluation.yaml``, section ``baselines``)."""

    lookback_days: int = Field(default=252, ge=20, description="estimation window of the estimated baselines")
    rebalance_every_days: int = Field(
        default=21, ge=1, description="trading schedule of every baseline but buy-and-hold"
    )
    fixed_mix: dict[str, float] | None = Field(
        default=None, description="asset -> weight of the fixed mix; default 60% first asset, 40% second"
    )
    regime_trade_rate: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="regime_growth trades this fraction of the way to its filtered optimum each day; null: chosen on "
        "validation among backtesting.tuning.RATES where a command has a validation split (report, walk-forward, "
        "gate), 1 (trade all the way) where it has none",
    )
    include: tuple[str, ...] = Field(
        default=(
            "equal_weight",
            "buy_and_hold",
            "fixed_mix",
            "min_variance",
            "mean_variance",
            "risk_parity",
            "growth_optimal",
            "regime_growth",
        )
    )


@dataclass(frozen=True)
class Inputs:
    """What building a baseline may use: the universe, the shared parameters, the fitted regime model."""

    assets: tuple[str, ...]
    config: BaselinesConfig
    regimes: RegimeModel | None
    regime_window_days: int


@dataclass(frozen=True)
class BaselineSpec:
    """One registered baseline.

    :param build: its decision function's object, from ``Inputs``.
    :param estimated: it fits on the last ``lookback_days`` returns.
    :param needs_regimes: it filters with a fitted regime model.
    :param routable: the server can decide it from a request's closes alone (a fixed mix needs a configured mix
        for the served universe, buy-and-hold a start date: neither is).
    """

    build: Callable[[Inputs], Baseline]
    estimated: bool = False
    needs_regimes: bool = False
    routable: bool = True


BASELINES: dict[str, BaselineSpec] = {
    "equal_weight": BaselineSpec(lambda i: EqualWeight("equal_weight", i.config.rebalance_every_days)),
    "buy_and_hold": BaselineSpec(lambda i: BuyAndHold("buy_and_hold", 1), routable=False),
    "fixed_mix": BaselineSpec(
        lambda i: FixedMix("fixed_mix", i.config.rebalance_every_days, fixed_mix_weights(i.assets, i.config.fixed_mix)),
        routable=False,
    ),
    "min_variance": BaselineSpec(
        lambda i: MinimumVariance("min_variance", i.config.rebalance_every_days, i.config.lookback_days),
        estimated=True,
    ),
    "mean_variance": BaselineSpec(
        lambda i: MeanVariance("mean_variance", i.config.rebalance_every_days, i.config.lookback_days),
        estimated=True,
    ),
    "risk_parity": BaselineSpec(
        lambda i: RiskParity("risk_parity", i.config.rebalance_every_days, i.config.lookback_days), estimated=True
    ),
    "growth_optimal": BaselineSpec(
        lambda i: GrowthOptimal("growth_optimal", i.config.rebalance_every_days, i.config.lookback_days),
        estimated=True,
    ),
    # It trades daily: the point is to follow the regimes as the filter sees them change.
    "regime_growth": BaselineSpec(
        lambda i: FilteredGrowth(
            "regime_growth",
            1,
            i.regimes,
            window_days=i.regime_window_days,
            trade_rate=i.config.regime_trade_rate or 1.0,
        ),
        needs_regimes=True,
    ),
}
ROUTABLE = tuple(name for name, spec in BASELINES.items() if spec.routable)


def _spec(name: str, field: str = "baselines") -> BaselineSpec:
    try:
        return BASELINES[name]
    except KeyError:
        raise ConfigError(f"{field}: unknown baseline '{name}'; choose from {list(BASELINES)}") from None


def make_baseline(
    name: str,
    assets: Sequence[str],
    config: BaselinesConfig | None = None,
    regimes: RegimeModel | None = None,
    regime_window_days: int = DEFAULT_REGIME_WINDOW_DAYS,
) -> Baseline:
    """The baseline ``name`` over ``assets``; ``ConfigError`` naming it when unknown or, for ``regime_growth``,
    without a regime model."""
    spec = _spec(name)
    if spec.needs_regimes and regimes is None:
        raise ConfigError(f"baselines: {name} filters with a fitted regime model, and none was given")
    return spec.build(Inputs(tuple(assets), config or BaselinesConfig(), regimes, regime_window_days))


def make_baselines(
    assets: Sequence[str],
    config: BaselinesConfig | None = None,
    regimes: RegimeModel | None = None,
    regime_window_days: int = DEFAULT_REGIME_WINDOW_DAYS,
) -> list[Baseline]:
    """The configured classical baselines, in report order. ``regime_growth`` needs ``regimes``, the model fitted on
    the data's train split; without one it is left out."""
    config = config or BaselinesConfig()
    unknown = [name for name in config.include if name not in BASELINES]
    if unknown:
        raise ConfigError(f"baselines.include: unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    return [
        make_baseline(name, assets, config, regimes, regime_window_days)
        for name in config.include
        if regimes is not None or not BASELINES[name].needs_regimes
    ]


def closes_needed(
    name: str, config: BaselinesConfig | None = None, regime_window_days: int = DEFAULT_REGIME_WINDOW_DAYS
) -> int:
    """Closes baseline ``name``'s decision reads: its lookback + 1 for an estimated baseline, a full regime window +
    1 for ``regime_growth``, 1 otherwise. Given that many, it decides as with the whole history."""
    spec, config = _spec(name), config or BaselinesConfig()
    if spec.estimated:
        return config.lookback_days + 1
    if spec.needs_regimes:
        return regime_window_days + 1
    return 1

"""Where a market comes from: the CSV a ``DataConfig`` names, or the built-in synthetic market, and its true law.

``load_market`` is what the env, validation, evaluation and the CLI all call, so every one of them accepts and
rejects the same data with the same messages.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from core.constants import TRADING_DAYS_PER_YEAR
from core.errors import DataError
from envs.config import DataConfig
from envs.market import MarketData, load_csv
from envs.synthetic import MarketParams, default_market, default_params, load_params

CASH = "CASH"


def load_market(config: DataConfig, *, min_rows: int = 2) -> MarketData:
    """The market a data config names: its CSV, or the built-in synthetic market when ``path`` is null.

    Cached per process (keyed by the file's modification time), so many envs in one worker parse the file once.
    """
    if config.path is None:
        market = _builtin(
            config.synthetic_seed, config.synthetic_years, config.synthetic_assets, config.synthetic_regimes
        )
    else:
        path = Path(config.path).expanduser().resolve()
        if not path.is_file():
            raise DataError(f"{config.path}: no such file")
        market = _cached_csv(
            str(path), path.stat().st_mtime_ns, config.assets, config.extra_columns, config.ffill_limit, min_rows
        )
    if market.n_days < min_rows:
        raise DataError(f"{market.source}: {market.n_days} rows, need at least {min_rows}")
    return with_cash(market, config.rf_column) if config.cash else market


def market_law(config: DataConfig) -> MarketParams | None:
    """The true law behind the data: the built-in market's, or a synthetic CSV's ``.params.json``; ``None`` for real data."""
    if config.path is None:
        return default_params(
            n_assets=config.synthetic_assets, n_regimes=config.synthetic_regimes, seed=config.synthetic_seed
        )
    known = load_params(Path(config.path).expanduser())
    return None if known is None else known[0]


@functools.lru_cache(maxsize=8)
def _builtin(seed: int, years: float, n_assets: int, n_regimes: int) -> MarketData:
    market, _, _ = default_market(seed=seed, years=years, n_assets=n_assets, n_regimes=n_regimes)
    return market


@functools.lru_cache(maxsize=8)
def _cached_csv(path: str, mtime_ns: int, assets, extras, ffill_limit: int, min_rows: int) -> MarketData:
    return load_csv(path, assets=assets, extra_columns=extras, ffill_limit=ffill_limit, min_rows=min_rows)


def with_cash(market: MarketData, rf_column: str | None) -> MarketData:
    """Add a ``CASH`` asset whose price compounds the risk-free rate (annual decimals, daily accrual).

    :raises DataError: the market has an asset named ``CASH`` already.
    """
    if CASH in market.assets:
        raise DataError(
            f"{market.source}: asset column '{CASH}' already exists and data.cash adds one of that name "
            "(rename the column or set data.cash: false)"
        )
    if rf_column is None:
        cash = np.ones(market.n_days)
    else:
        daily = market.extras[rf_column][:-1] / TRADING_DAYS_PER_YEAR
        cash = np.concatenate([[1.0], np.cumprod(1.0 + daily)])
    return MarketData(
        dates=market.dates,
        closes=np.column_stack([market.closes, cash]),
        assets=market.assets + (CASH,),
        extras=market.extras,
        source=market.source,
    )


def describe_data(config: DataConfig) -> str:
    """One line naming the data: the CSV's path, or the built-in market's parameters."""
    if config.path is None:
        return (
            f"the built-in synthetic market (seed {config.synthetic_seed}, {config.synthetic_years:g} years, "
            f"{config.synthetic_assets} assets, {config.synthetic_regimes} regimes)"
        )
    return str(config.path)


def data_tag(config: DataConfig) -> str:
    """A short name for the data, fit for folder names: ``builtin`` or the CSV's stem."""
    if config.path is None:
        return "builtin"
    stem = Path(config.path).stem
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem) or "data"


def market_truth(config: DataConfig) -> tuple[MarketParams, np.ndarray] | None:
    """The true law and the regime path behind the data (for the oracles): the built-in market's, a synthetic CSV's
    ``.params.json``; ``None`` for real data."""
    if config.path is None:
        _, params, regimes = default_market(
            seed=config.synthetic_seed,
            years=config.synthetic_years,
            n_assets=config.synthetic_assets,
            n_regimes=config.synthetic_regimes,
        )
        return params, regimes
    return load_params(Path(config.path).expanduser())

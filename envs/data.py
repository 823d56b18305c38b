"""Market data entry point: load what a ``DataConfig`` names, and the ``python -m envs.data`` command line.

    python -m envs.data validate FILE.csv [--extra rf ...]
    python -m envs.data synth --out FILE.csv --seed N [--years Y --assets K --regimes R]
    python -m envs.data fetch --tickers SPY TLT GLD BTC-USD [--start 2010-01-01 --end 2024-12-31] --out FILE.csv
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from envs.config import DataConfig
from envs.errors import ConfigError, DataError
from envs.market import TRADING_DAYS_PER_YEAR, MarketData, load_csv
from envs.synthetic import MarketParams, default_market, default_params, load_params, write_synthetic

log = logging.getLogger(__name__)

CASH = "CASH"


def load_market(config: DataConfig, *, min_rows: int = 2) -> MarketData:
    """The market a data config names: its CSV, or the built-in synthetic market when ``path`` is null.

    Cached per process (keyed by the file's modification time), so many envs in one worker parse the file once.
    """
    if config.path is None:
        market = _builtin(config.synthetic_seed, config.synthetic_years, config.synthetic_assets, config.synthetic_regimes)
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
        return default_params(n_assets=config.synthetic_assets, n_regimes=config.synthetic_regimes, seed=config.synthetic_seed)
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
    """Add a ``CASH`` asset whose price compounds the risk-free rate (annual decimals, daily accrual)."""
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


def summarize(market: MarketData) -> dict:
    """Assets, rows, date range and annualised log return / volatility per asset."""
    log_returns = market.log_returns()
    return {
        "source": market.source,
        "rows": market.n_days,
        "first_date": str(market.dates[0]),
        "last_date": str(market.dates[-1]),
        "assets": {
            asset: {
                "annual_log_return": float(log_returns[:, k].mean() * TRADING_DAYS_PER_YEAR),
                "annual_volatility": float(log_returns[:, k].std(ddof=1) * np.sqrt(TRADING_DAYS_PER_YEAR)),
            }
            for k, asset in enumerate(market.assets)
        },
        "extras": list(market.extras),
    }


def frame_from_download(frame: pd.DataFrame) -> pd.DataFrame:
    """Turn a yfinance ``download(..., auto_adjust=True)`` frame into our wide format (``date`` + one close per ticker).

    Accepts the multi-index column layout (``("Close", ticker)``) and the single-ticker flat layout. Days where
    every ticker is missing are dropped (exchange holidays); days where some are missing stay as gaps, which the
    loader forward-fills up to its limit (crypto trades on weekends, equities do not). Days before the first day on
    which every ticker has a close are dropped, since there is no earlier close to fill them from.
    """
    if isinstance(frame.columns, pd.MultiIndex):
        level = 0 if "Close" in frame.columns.get_level_values(0) else 1
        closes = frame.xs("Close", axis=1, level=level)
    elif "Close" in frame.columns:
        closes = frame[["Close"]]
    else:
        raise DataError(f"downloaded frame has no 'Close' column (columns are {list(frame.columns)})")
    closes = closes.dropna(how="all")
    if closes.empty:
        raise DataError("downloaded frame has no prices")
    # The loader cannot forward-fill a gap on the first day (that would need a later price), so start on the first
    # day every ticker has a close (e.g. the start date is a weekend that only crypto trades on, or a ticker listed later).
    complete = closes.notna().all(axis=1).to_numpy()
    if not complete.any():
        never = [str(c) for c in closes.columns if closes[c].isna().all()]
        detail = f"; no prices at all for {never}" if never else ""
        raise DataError(f"downloaded frame has no day on which every ticker has a price{detail}")
    closes = closes.iloc[int(complete.argmax()) :]
    out = closes.copy()
    out.columns = [str(c) for c in out.columns]
    out.index = pd.to_datetime(out.index).tz_localize(None) if getattr(out.index, "tz", None) else pd.to_datetime(out.index)
    out.insert(0, "date", out.index.strftime("%Y-%m-%d"))
    return out.reset_index(drop=True)


def fetch(tickers: Sequence[str], start: str | None, end: str | None) -> pd.DataFrame:
    """Download daily adjusted closes with yfinance (optional extra: ``pip install -e .[fetch]``)."""
    try:
        import yfinance
    except ImportError as exc:
        raise ConfigError("fetch needs yfinance: pip install -e '.[fetch]'") from exc
    frame = yfinance.download(list(tickers), start=start, end=end, auto_adjust=True, progress=False)
    return frame_from_download(frame)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envs.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a price CSV and print a summary as JSON")
    validate.add_argument("csv")
    validate.add_argument("--extra", nargs="*", default=[], help="extra (non-price) columns, e.g. rf")
    validate.add_argument("--ffill-limit", type=int, default=5)
    synth = commands.add_parser("synth", help="write a synthetic regime-switching market and its true parameters")
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--years", type=float, default=25.0)
    synth.add_argument("--assets", type=int, default=4)
    synth.add_argument("--regimes", type=int, default=3)
    fetch_cmd = commands.add_parser("fetch", help="download closes with yfinance into our CSV format")
    fetch_cmd.add_argument("--tickers", nargs="+", required=True)
    fetch_cmd.add_argument("--start")
    fetch_cmd.add_argument("--end")
    fetch_cmd.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    try:
        if args.command == "validate":
            market = load_csv(args.csv, extra_columns=args.extra, ffill_limit=args.ffill_limit)
            print(json.dumps(summarize(market), indent=2))
        elif args.command == "synth":
            market, record = write_synthetic(
                args.out, seed=args.seed, years=args.years, n_assets=args.assets, n_regimes=args.regimes
            )
            oracle = record["oracle"]["constant_mix"]
            print(json.dumps({"csv": args.out, "rows": market.n_days, "assets": list(market.assets), "oracle": oracle}, indent=2))
        else:
            frame = fetch(args.tickers, args.start, args.end)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(args.out, index=False)
            load_csv(args.out)  # what we write must pass our own validation
            print(json.dumps({"csv": args.out, "rows": len(frame), "assets": list(frame.columns[1:])}))
    except (DataError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

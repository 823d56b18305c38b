"""The ``python -m envs.data`` command line: check, write or download market data in the project's CSV format.

    python -m envs.data validate FILE.csv [--extra rf ...] [--env-config configs/env.yaml]
    python -m envs.data synth --out FILE.csv --seed N [--years Y --assets K --regimes R]
    python -m envs.data fetch --tickers SPY TLT GLD BTC-USD [--start 2010-01-01 --end 2024-12-31] --out FILE.csv
    python -m envs.data sample {etf-factors,sp500-stocks,sp500-index} --out FILE.csv [--assets AAPL MSFT ...]

``validate`` applies training's own checks: the file's format, then enough rows for the feature window and
splits that ``configs/env.yaml`` configures, with the same messages training would give. Exit status 0, or 1 with
one ``error:`` line (2 for a bad config or usage).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.cli import fail, prog
from core.config import parse_config
from core.constants import TRADING_DAYS_PER_YEAR
from core.errors import ConfigError, DataError
from envs.config import ENV_YAML, DataConfig, EnvConfig, load_env_config, with_data
from envs.law_file import write_synthetic
from envs.market import MarketData
from envs.samples import SAMPLES, write_sample
from envs.sources import load_market
from envs.splits import split_market


def min_rows(config: EnvConfig) -> int:
    """Fewest rows an env over ``config`` accepts: the feature warm-up plus a few trading days."""
    return config.warmup_days + 4


def market_summary(market: MarketData) -> dict:
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


def validate(path: str, config: EnvConfig) -> dict:
    """Load ``path`` as training would under ``config`` and split it; the summary plus the splits' dates.

    :raises DataError: a bad file, or too few rows for the configured feature window.
    :raises ConfigError: splits that do not fit the file (e.g. a ``train_end`` date outside it).
    """
    config = with_data(config, path)
    market = load_market(config.data, min_rows=min_rows(config))
    warmup = config.warmup_days
    splits = split_market(
        market, train_end=config.data.train_end, validation_end=config.data.validation_end, warmup_days=warmup
    )
    summary = market_summary(market)
    summary["warmup_days"] = warmup
    summary["splits"] = {
        name: {"first": str(market.dates[s.first]), "last": str(market.dates[s.last]), "days": s.n_days}
        for name, s in splits.items()
        if name != "all"
    }
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("envs.data"), description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="check a price CSV as training would and print a summary as JSON")
    check.add_argument("csv")
    check.add_argument(
        "--extra", nargs="*", default=None, help="extra (non-price) columns, e.g. rf (default: the env config's)"
    )
    check.add_argument(
        "--ffill-limit",
        type=int,
        default=None,
        help="most consecutive missing prices filled (default: the env config's)",
    )
    check.add_argument(
        "--env-config", default=str(ENV_YAML), help="env YAML whose feature window and splits the file must fit"
    )
    synth = commands.add_parser("synth", help="write a synthetic regime-switching market and its true parameters")
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--years", type=float, default=25.0)
    synth.add_argument("--assets", type=int, default=4)
    synth.add_argument("--regimes", type=int, default=3)
    sample = commands.add_parser("sample", help="write real daily prices built in (skfolio's datasets) as a CSV")
    sample.add_argument("name", choices=sorted(SAMPLES))
    sample.add_argument("--out", required=True)
    sample.add_argument("--assets", nargs="*", help="a subset of the sample's columns, in this order")
    fetch_cmd = commands.add_parser("fetch", help="download closes with yfinance into our CSV format (needs internet)")
    fetch_cmd.add_argument("--tickers", nargs="+", required=True)
    fetch_cmd.add_argument("--start")
    fetch_cmd.add_argument("--end")
    fetch_cmd.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    try:
        if args.command == "validate":
            try:
                config = load_env_config(args.env_config)
            except ConfigError as exc:
                return fail(exc)
            data = {}
            if args.extra is not None:
                data["extra_columns"] = tuple(args.extra)
                if config.data.rf_column not in data["extra_columns"]:
                    data["rf_column"] = None
            if args.ffill_limit is not None:
                data["ffill_limit"] = args.ffill_limit
            config = config.model_copy(
                update={"data": parse_config(DataConfig, config.data.model_dump() | data, where="validate")}
            )
            print(json.dumps(validate(args.csv, config), indent=2))
        elif args.command == "synth":
            market, record = write_synthetic(
                args.out, seed=args.seed, years=args.years, n_assets=args.assets, n_regimes=args.regimes
            )
            oracle = record["oracle"]["constant_mix"]
            print(
                json.dumps(
                    {"csv": args.out, "rows": market.n_days, "assets": list(market.assets), "oracle": oracle}, indent=2
                )
            )
        elif args.command == "sample":
            from envs.market import load_csv

            frame = write_sample(args.name, args.out, args.assets)
            load_csv(args.out)  # what we write must pass our own validation
            print(
                json.dumps(
                    {
                        "csv": args.out,
                        "rows": len(frame),
                        "assets": list(frame.columns[1:]),
                        "first_date": frame["date"].iloc[0],
                        "last_date": frame["date"].iloc[-1],
                        "about": SAMPLES[args.name][1],
                    },
                    indent=2,
                )
            )
        else:
            from envs.fetch import fetch
            from envs.market import load_csv

            frame = fetch(args.tickers, args.start, args.end)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(args.out, index=False)
            load_csv(args.out)  # what we write must pass our own validation
            print(json.dumps({"csv": args.out, "rows": len(frame), "assets": list(frame.columns[1:])}))
    except (ConfigError, DataError) as exc:
        return fail(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

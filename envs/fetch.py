"""Download daily closes from Yahoo Finance (yfinance, the optional ``fetch`` extra) into the project's CSV format.

An offline machine gets one line saying so, before yfinance is asked anything: yfinance itself reports an
unreachable network as an empty download under a page of library noise.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

import pandas as pd

from core.errors import ConfigError, DataError

YAHOO_HOST = "query2.finance.yahoo.com"


def check_network(host: str = YAHOO_HOST, port: int = 443, timeout_s: float = 5.0) -> None:
    """Raise ``DataError`` in one line when ``host:port`` cannot be reached (no DNS, no route, a firewall)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise DataError(
            f"fetch: cannot reach {host}:{port} ({exc.strerror or exc}); the network is unreachable from this machine. "
            "Copy a CSV in from elsewhere, or use built-in data: python -m envs.data synth --out data/synthetic.csv"
        ) from None


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
    out.index = (
        pd.to_datetime(out.index).tz_localize(None) if getattr(out.index, "tz", None) else pd.to_datetime(out.index)
    )
    out.insert(0, "date", out.index.strftime("%Y-%m-%d"))
    return out.reset_index(drop=True)


def fetch(tickers: Sequence[str], start: str | None, end: str | None) -> pd.DataFrame:
    """Download daily adjusted closes with yfinance (optional extra: ``pip install -e .[fetch]``).

    :raises DataError: the network is unreachable, or nothing came back for the tickers (with yfinance's reasons).
    """
    check_network()
    try:
        import yfinance
    except ImportError as exc:
        raise ConfigError("fetch needs yfinance: .venv/bin/pip install -e '.[fetch]'") from exc
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)  # its per-ticker tracebacks; the reasons are kept below
    frame = yfinance.download(list(tickers), start=start, end=end, auto_adjust=True, progress=False)
    failed = dict(getattr(getattr(yfinance, "shared", None), "_ERRORS", {}) or {})
    try:
        return frame_from_download(frame)
    except DataError as exc:
        if failed:
            reasons = "; ".join(f"{ticker}: {str(reason).strip()[:120]}" for ticker, reason in failed.items())
            raise DataError(f"{exc} (yfinance: {reasons})") from None
        raise

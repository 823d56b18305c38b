"""Report figures (matplotlib, Agg backend): each function takes backtest results and returns PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from backtesting import metrics  # noqa: E402
from backtesting.backtest import BacktestResult  # noqa: E402
from core.constants import TRADING_DAYS_PER_YEAR


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _style(name: str, agents: set[str]) -> dict:
    if name in agents:
        return {"linewidth": 2.0}
    if name.startswith("oracle"):
        return {"linewidth": 1.0, "linestyle": ":"}
    return {"linewidth": 1.0, "alpha": 0.7}


def equity_curves(results: Mapping[str, BacktestResult], agents: set[str]) -> bytes:
    figure, ax = plt.subplots(figsize=(10, 5))
    for name, r in results.items():
        ax.plot(r.dates.astype("datetime64[D]"), r.wealth, label=name, **_style(name, agents))
    ax.set_yscale("log")
    ax.set_title("Wealth (log scale), net of costs")
    ax.legend(fontsize=8, ncol=2)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    return _png(figure)


def drawdown_curves(results: Mapping[str, BacktestResult], agents: set[str]) -> bytes:
    figure, ax = plt.subplots(figsize=(10, 4))
    for name, r in results.items():
        ax.plot(r.dates.astype("datetime64[D]"), -metrics.drawdowns(r.returns), label=name, **_style(name, agents))
    ax.set_title("Drawdown")
    ax.legend(fontsize=8, ncol=2)
    return _png(figure)


def rolling_sharpe(results: Mapping[str, BacktestResult], agents: set[str], window_days: int = 126) -> bytes:
    figure, ax = plt.subplots(figsize=(10, 4))
    for name, r in results.items():
        if r.returns.size <= window_days:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(r.returns, window_days)
        sharpe = windows.mean(axis=1) / windows.std(axis=1, ddof=1) * np.sqrt(TRADING_DAYS_PER_YEAR)
        ax.plot(r.dates[window_days - 1 :].astype("datetime64[D]"), sharpe, label=name, **_style(name, agents))
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_title(f"Rolling Sharpe ratio ({window_days} days)")
    ax.legend(fontsize=8, ncol=2)
    return _png(figure)


def weights_area(result: BacktestResult) -> bytes:
    figure, ax = plt.subplots(figsize=(10, 3))
    ax.stackplot(result.dates.astype("datetime64[D]"), result.weights.T, labels=list(result.assets))
    ax.set_ylim(0, 1)
    ax.set_title(f"Target weights of {result.name}")
    ax.legend(fontsize=8, loc="upper left", ncol=len(result.assets))
    return _png(figure)


def turnover_bars(results: Mapping[str, BacktestResult]) -> bytes:
    figure, ax = plt.subplots(figsize=(10, 3.5))
    names = list(results)
    ax.bar(names, [metrics.annualized_turnover(results[n].turnover) for n in names])
    ax.set_ylabel("annual turnover")
    ax.set_title("Turnover (sum |w_new - w_held| per year)")
    ax.tick_params(axis="x", rotation=45)
    return _png(figure)

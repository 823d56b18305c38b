"""Report figures (matplotlib, Agg backend): each function takes backtest results and returns PNG bytes (its
``*_figure`` twin returns the figure itself).

Built for wide universes and many strategies: no two series of a chart share a colour (``colours``), legends sit
below the plot rather than over it, and a weights chart shows the ``TOP_ASSETS`` assets with the largest average
weight plus one band for all the others.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from backtesting import metrics  # noqa: E402
from backtesting.backtest import BacktestResult  # noqa: E402
from core.constants import TRADING_DAYS_PER_YEAR

TOP_ASSETS = 8  # a weights chart's bands: these many assets, then one for all the others
OTHER_COLOUR = "#d0d0d0"  # the others' band: light grey, apart from every qualitative colour


def colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct RGBA colours: tab10 up to 10, tab20 up to 20, beyond that ``n`` points along the continuous
    turbo map (distinct for any ``n``, where sampling the 256-entry map itself would repeat)."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    spread = LinearSegmentedColormap.from_list("spread", plt.get_cmap("turbo").colors, N=n)
    return [spread(i) for i in range(n)]


def _legend_below(ax, n_entries: int, offset: float = -0.12) -> None:
    """The legend under the plot, outside it, in up to 5 columns (``bbox_inches="tight"`` keeps it in the PNG)."""
    ax.legend(
        fontsize=8, loc="upper center", bbox_to_anchor=(0.5, offset), ncol=max(1, min(n_entries, 5)), frameon=False
    )


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


def equity_figure(results: Mapping[str, BacktestResult], agents: set[str]) -> Figure:
    figure, ax = plt.subplots(figsize=(10, 5))
    for (name, r), colour in zip(results.items(), colours(len(results))):
        ax.plot(r.dates.astype("datetime64[D]"), r.wealth, label=name, color=colour, **_style(name, agents))
    ax.set_yscale("log")
    ax.set_title("Wealth (log scale), net of costs")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    _legend_below(ax, len(results))
    return figure


def equity_curves(results: Mapping[str, BacktestResult], agents: set[str]) -> bytes:
    return _png(equity_figure(results, agents))


def drawdown_curves(results: Mapping[str, BacktestResult], agents: set[str]) -> bytes:
    figure, ax = plt.subplots(figsize=(10, 4))
    for (name, r), colour in zip(results.items(), colours(len(results))):
        drawdown = -metrics.drawdowns(r.returns)
        ax.plot(r.dates.astype("datetime64[D]"), drawdown, label=name, color=colour, **_style(name, agents))
    ax.set_title("Drawdown")
    _legend_below(ax, len(results))
    return _png(figure)


def rolling_sharpe(results: Mapping[str, BacktestResult], agents: set[str], window_days: int = 126) -> bytes:
    figure, ax = plt.subplots(figsize=(10, 4))
    for (name, r), colour in zip(results.items(), colours(len(results))):
        if r.returns.size <= window_days:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(r.returns, window_days)
        sharpe = windows.mean(axis=1) / windows.std(axis=1, ddof=1) * np.sqrt(TRADING_DAYS_PER_YEAR)
        dates = r.dates[window_days - 1 :].astype("datetime64[D]")
        ax.plot(dates, sharpe, label=name, color=colour, **_style(name, agents))
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_title(f"Rolling Sharpe ratio ({window_days} days)")
    _legend_below(ax, len(results))
    return _png(figure)


def weight_bands(result: BacktestResult, top: int = TOP_ASSETS) -> tuple[list[str], np.ndarray]:
    """Labels and ``(B, N)`` stacked weights of a weights chart: every asset when there are at most ``top + 1``,
    else the ``top`` with the largest average weight (largest first) and ``other (M assets)``, their sum."""
    weights = np.asarray(result.weights, dtype=np.float64)
    if weights.shape[1] <= top + 1:
        return list(result.assets), weights.T
    order = np.argsort(-weights.mean(axis=0), kind="stable")
    shown, rest = order[:top], order[top:]
    labels = [result.assets[k] for k in shown] + [f"other ({rest.size} assets)"]
    return labels, np.vstack([weights[:, shown].T, weights[:, rest].sum(axis=1)])


def weights_figure(result: BacktestResult, top: int = TOP_ASSETS) -> Figure:
    labels, bands = weight_bands(result, top)
    grouped = len(labels) < len(result.assets)
    palette = colours(len(labels) - 1) + [OTHER_COLOUR] if grouped else colours(len(labels))
    figure, ax = plt.subplots(figsize=(10, 3))
    ax.stackplot(result.dates.astype("datetime64[D]"), bands, labels=labels, colors=palette)
    ax.set_ylim(0, 1)
    shown = f", the {top} largest on average" if grouped else ""
    ax.set_title(f"Target weights of {result.name} ({len(result.assets)} assets{shown})")
    _legend_below(ax, len(labels))
    return figure


def weights_area(result: BacktestResult) -> bytes:
    return _png(weights_figure(result))


def turnover_bars(results: Mapping[str, BacktestResult]) -> bytes:
    figure, ax = plt.subplots(figsize=(10, 3.5))
    names = list(results)
    ax.bar(names, [metrics.annualized_turnover(results[n].turnover) for n in names])
    ax.set_ylabel("annual turnover")
    ax.set_title("Turnover (sum |w_new - w_held| per year)")
    ax.tick_params(axis="x", rotation=45)
    return _png(figure)

"""The report as one self-contained HTML page: tables from the ``Report``, figures embedded as PNG, laid out by the
Jinja2 template ``evaluation/templates/report.html`` (autoescaped; only the tables and images are passed as HTML)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import TYPE_CHECKING

import jinja2
import pandas as pd

from backtesting.backtest import metrics_table
from evaluation import plots

if TYPE_CHECKING:
    from evaluation.report import Report

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("evaluation", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _with_intervals(table: pd.DataFrame, intervals: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    rows = table.copy()
    if all("sharpe_ci95" in intervals[n] for n in rows.index):
        rows.insert(
            min(3, len(rows.columns)),
            "sharpe 95% CI",
            [f"[{intervals[n]['sharpe_ci95'][0]:.2f}, {intervals[n]['sharpe_ci95'][1]:.2f}]" for n in rows.index],
        )
    if all("annual_return_ci95" in intervals[n] for n in rows.index):
        rows.insert(
            1,
            "annual return 95% CI",
            [
                f"[{intervals[n]['annual_return_ci95'][0]:.1%}, {intervals[n]['annual_return_ci95'][1]:.1%}]"
                for n in rows.index
            ],
        )
    return rows


def render_html(report: Report) -> str:
    results, agents = report.results, set(report.agents)
    names = list(results)
    matrix = pd.DataFrame(
        [
            [
                ""
                if a == b
                else f"{report.pairwise[a][b]['annualised_difference']:+.1%} (p={report.pairwise[a][b]['p_value']:.2f})"
                for b in names
            ]
            for a in names
        ],
        index=names,
        columns=names,
    )
    walk_forward = None
    if report.walk_forward is not None:
        wf = report.walk_forward
        walk_forward = {
            "n_folds": len(wf.folds),
            "timesteps": wf.timesteps,
            "folds": pd.DataFrame(wf.folds).to_html(index=False, border=0),
            "table": _with_intervals(metrics_table(wf.results), wf.intervals).to_html(
                float_format=lambda v: f"{v:.4f}", border=0
            ),
            "equity": _b64(plots.equity_curves(wf.results, agents)),
        }
    figures = [
        ("Equity curves", plots.equity_curves(results, agents)),
        ("Drawdowns", plots.drawdown_curves(results, agents)),
        ("Rolling Sharpe", plots.rolling_sharpe(results, agents)),
        ("Turnover", plots.turnover_bars(results)),
    ] + [(f"Weights: {name}", plots.weights_area(results[name])) for name in report.agents]
    return TEMPLATES.get_template("report.html").render(
        split=report.split,
        first=report.dates[0],
        last=report.dates[1],
        days=report.days,
        source=report.source,
        cost_bps=f"{report.cost_bps:g}",
        summary=_with_intervals(report.table, report.intervals).to_html(
            float_format=lambda v: f"{v:.4f}", classes="summary", border=0
        ),
        skill=pd.DataFrame(report.skill).T.to_html(float_format=lambda v: f"{v:.3f}", border=0),
        n_trials=report.skill[report.agents[0]]["n_trials"] if report.agents else 0,
        matrix=matrix.to_html(border=0),
        efficiency=report.efficiency,
        walk_forward=walk_forward,
        figures=[(title, _b64(png)) for title, png in figures],
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )

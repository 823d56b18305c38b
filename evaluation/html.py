"""The report as one self-contained HTML page: compact tables from the ``Report`` (percentages, intervals beside
their figure, agents in bold), figures embedded as PNG, laid out by the Jinja2 template
``evaluation/templates/report.html`` (autoescaped; only the tables and images are passed as HTML). Every table fits a
1,280-pixel-wide page (tested in Chromium).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Mapping

import jinja2
import numpy as np
import pandas as pd

from backtesting.backtest import metrics_table
from evaluation import plots
from evaluation.held_out import HeldOut
from evaluation.records import Report

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("evaluation", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _pct(value: float, digits: int = 1) -> str:
    return "-" if not np.isfinite(value) else f"{100 * value:.{digits}f}%"


def _num(value: float, digits: int = 2) -> str:
    return "-" if not np.isfinite(value) else f"{value:.{digits}f}"


def _table(rows: list[list[str]], header: list[str], agents: set[str] = frozenset(), css: str = "") -> str:
    """An HTML table whose first column names the row; rows of agents get the ``agent`` class (bold)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=agent' if row[0] in agents else ''}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table class='{css}'><tr>{head}</tr>{body}</table>"


def summary_table(table: pd.DataFrame, intervals: Mapping[str, Mapping[str, list[float]]], agents: set[str]) -> str:
    header = [
        "strategy",
        "annual return [95% CI]",
        "volatility",
        "Sharpe [95% CI]",
        "Sortino",
        "max drawdown",
        "Calmar",
        "CVaR 95%",
        "log growth (bp/day)",
        "turnover/yr",
        "total cost",
    ]
    rows = []
    for name, m in table.iterrows():
        ci = intervals.get(name, {})
        ret_ci = ci.get("annual_return_ci95")
        sharpe_ci = ci.get("sharpe_ci95")
        rows.append(
            [
                html.escape(str(name)),
                _pct(m["annual_return"]) + (f" [{_pct(ret_ci[0], 0)}, {_pct(ret_ci[1], 0)}]" if ret_ci else ""),
                _pct(m["annual_volatility"]),
                _num(m["sharpe"]) + (f" [{_num(sharpe_ci[0])}, {_num(sharpe_ci[1])}]" if sharpe_ci else ""),
                _num(m["sortino"]),
                _pct(m["max_drawdown"]),
                _num(m["calmar"]),
                _pct(m["cvar_95"], 2),
                _num(1e4 * m["mean_daily_log_growth"], 2),
                _num(m["annual_turnover"], 1),
                _pct(m["total_cost"], 2),
            ]
        )
    return _table(rows, header, agents)


def skill_table(skill: Mapping[str, Mapping[str, float]]) -> str:
    rows = [
        [html.escape(n), _num(s["psr_vs_equal_weight"], 3), _num(s["deflated_sharpe"], 3), str(int(s["n_trials"]))]
        for n, s in skill.items()
    ]
    return _table(rows, ["agent", "PSR vs equal weight", "deflated Sharpe", "trials"])


def matrix_table(pairwise: Mapping[str, Mapping[str, Mapping[str, float]]], agents: set[str]) -> str:
    """Row minus column; headers wrap at underscores and within long words. With more strategies than one table's
    columns fit a page (``matrix_columns``), the columns are cut into consecutive tables of every row each, so every
    pair is shown and every table fits."""
    names = list(pairwise)
    labels = {n: _short(n) for n in names}
    per_table = matrix_columns(list(labels.values()))
    tables = []
    for start in range(0, len(names), per_table):
        columns = names[start : start + per_table]
        rows = [
            [html.escape(labels[a])]
            + [
                "" if a == b else f"{pairwise[a][b]['annualised_difference']:+.1%}<br>p={pairwise[a][b]['p_value']:.2f}"
                for b in columns
            ]
            for a in names
        ]
        header = [""] + [_breakable(labels[n]) for n in columns]
        tables.append(_table(rows, header, {html.escape(labels[a]) for a in agents}, css="matrix"))
    return "".join(tables)


MATRIX_NAME_CHARS = 40  # longer row names keep their start and end around an ellipsis
MATRIX_WORD_CHARS = 7  # a header word breaks after this many characters (7 x 7.5 pixels fit a 64-pixel column)


def _short(name: str) -> str:
    if len(name) <= MATRIX_NAME_CHARS:
        return name
    return name[:24] + "\u2026" + name[-(MATRIX_NAME_CHARS - 25) :]


def _breakable(label: str) -> str:
    """``label`` with spaces for underscores and a zero-width space every ``MATRIX_WORD_CHARS`` characters of a
    longer word, so a header wraps within its column instead of widening it."""
    words = label.replace("_", " ").split(" ")
    step = MATRIX_WORD_CHARS
    return " ".join("\u200b".join(word[i : i + step] for i in range(0, len(word), step)) for word in words)


PAGE_PX = 1232  # the template's body: a 1,280-pixel window less its 24-pixel margins
MATRIX_COLUMN_PX = 73  # a matrix column at most: the template's 64-pixel max-width, 2 x 4 padding and a border
MATRIX_CHAR_PX = 7.5  # the widest a character of the matrix's 11.5-pixel font averages, for the row names


def matrix_width_px(names: list[str], columns: int) -> float:
    """An upper estimate of a matrix table's width: its unwrapped row names, then ``columns`` capped columns."""
    return max(len(n) for n in names) * MATRIX_CHAR_PX + 2 * 4 + 1 + columns * MATRIX_COLUMN_PX


def matrix_columns(names: list[str]) -> int:
    """The most columns a matrix table over rows ``names`` may have and still fit ``PAGE_PX`` (at least one)."""
    free = PAGE_PX - matrix_width_px(names, 0)
    return max(1, int(free // MATRIX_COLUMN_PX))


def held_out_table(held_out: HeldOut, agents: set[str]) -> str:
    summary = held_out.summary()
    rows = []
    for name, s in summary["strategies"].items():
        cells = [
            html.escape(name),
            f"{1e4 * s['mean_daily_log_growth']:.2f} ± {1e4 * s['stderr']:.2f}",
            _num(s["annual_turnover"], 1),
        ]
        for oracle in ("oracle_filtered", "oracle_constant_mix"):
            e = summary["efficiency"][oracle].get(name)
            cells.append("" if e is None else f"{e['value']:.2f} [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]")
        rows.append(cells)
    header = [
        "strategy",
        "log growth (bp/day) ± s.e.",
        "turnover/yr",
        "efficiency vs filtered oracle [95% CI]",
        "efficiency vs constant mix [95% CI]",
    ]
    return _table(rows, header, agents)


def window_efficiency_table(efficiency: Mapping[str, Mapping[str, float | None]]) -> str:
    names = list(next(iter(efficiency.values())))
    rows = [
        [html.escape(n)] + ["n/a" if efficiency[o][n] is None else f"{efficiency[o][n]:.2f}" for o in efficiency]
        for n in names
    ]
    return _table(rows, ["strategy"] + [f"vs {o.replace('_', ' ')}" for o in efficiency])


def render_html(report: Report) -> str:
    results, agents = report.results, set(report.agents)
    walk_forward = None
    if report.walk_forward is not None:
        wf = report.walk_forward
        walk_forward = {
            "n_folds": len(wf.folds),
            "timesteps": wf.timesteps,
            "folds": pd.DataFrame(wf.folds).to_html(index=False, border=0),
            "table": summary_table(metrics_table(wf.results), wf.intervals, agents | {"served"}),
            "equity": _b64(plots.equity_curves(wf.results, agents)),
        }
    held_out = None
    if report.held_out is not None:
        summary = report.held_out.summary()
        held_out = {
            "paths": summary["paths"],
            "days": summary["days_per_path"],
            "seeds": f"{summary['seeds'][0]}-{summary['seeds'][1]}",
            "table": held_out_table(report.held_out, agents),
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
        summary=summary_table(report.table, report.intervals, agents),
        skill=skill_table(report.skill),
        n_trials=report.skill[report.agents[0]]["n_trials"] if report.agents else 0,
        matrix=matrix_table(report.pairwise, agents),
        held_out=held_out,
        efficiency=window_efficiency_table(report.efficiency) if report.efficiency else None,
        walk_forward=walk_forward,
        promoted=report.promoted,
        figures=[(title, _b64(png)) for title, png in figures],
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )

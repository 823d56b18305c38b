"""The report's results as one typed record (``Report``): what ``evaluation.report`` computes, what
``evaluation.html`` lays out, and what ``metrics.json`` and ``daily_returns.csv`` hold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from backtesting.backtest import BacktestResult, metrics_table
from evaluation.held_out import HeldOut
from evaluation.walkforward import WalkForward


@dataclass(frozen=True)
class Report:
    """Every agent and baseline on one split's days: results, tables and statistics (``evaluate``)."""

    results: dict[str, BacktestResult]
    agents: list[str]
    table: pd.DataFrame
    intervals: dict[str, dict[str, list[float]]]
    skill: dict[str, dict[str, float]]
    pairwise: dict[str, dict[str, dict[str, float]]]
    efficiency: dict[str, dict[str, float | None]] | None  # oracle -> agent -> efficiency
    split: str
    dates: tuple[str, str]
    days: int
    cost_bps: float
    source: str
    agent_meta: dict[str, dict[str, Any]]
    held_out: HeldOut | None = None  # synthetic data: agents and references on many fresh paths of the law
    walk_forward: WalkForward | None = None
    promoted: str | None = None  # the promotion gate's sentence: what is served by default, and why (registry.json)

    def to_json(self) -> dict[str, Any]:
        """``metrics.json``: the same numbers for machines."""
        return {
            "split": self.split,
            "dates": list(self.dates),
            "days": self.days,
            "cost_bps": self.cost_bps,
            "source": self.source,
            "agents": self.agents,
            "promoted": self.promoted,
            "agent_meta": self.agent_meta,
            "metrics": self.table.to_dict(orient="index"),
            "intervals": self.intervals,
            "skill": self.skill,
            "pairwise": self.pairwise,
            "efficiency": self.efficiency,
            "held_out": None if self.held_out is None else self.held_out.summary(),
            "walk_forward": None
            if self.walk_forward is None
            else {
                "folds": self.walk_forward.folds,
                "timesteps": self.walk_forward.timesteps,
                "metrics": metrics_table(self.walk_forward.results).to_dict(orient="index"),
                "intervals": self.walk_forward.intervals,
            },
        }

    def daily_returns(self) -> pd.DataFrame:
        """``daily_returns.csv``: one column of net daily returns per strategy, by date."""
        first = next(iter(self.results.values()))
        frame = pd.DataFrame({name: r.returns for name, r in self.results.items()})
        frame.insert(0, "date", pd.to_datetime(first.dates).strftime("%Y-%m-%d"))
        return frame

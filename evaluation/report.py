"""Out-of-sample report: every exported agent and every baseline on exactly the same dates and costs.

    python -m evaluation.report --models models/ [--data FILE.csv] [--split test] [--out reports/NAME]
                                [--walk-forward K [--walk-forward-timesteps N]]

Writes ``report.html`` (self-contained, figures embedded), ``metrics.json`` and ``daily_returns.csv`` to ``--out``
and logs them to MLflow as a run of their own. Headline figures come with stationary block-bootstrap 95% intervals;
``--walk-forward K`` adds K retrained out-of-sample folds, stitched (``evaluation.walkforward``). Each agent gets
its probabilistic Sharpe ratio against equal weight and its deflated Sharpe ratio for the number of
sweep trials behind the agents; a matrix of paired tests compares every strategy with every other on the same days.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from envs.config import EnvConfig, load_yaml, parse_config, with_data
from envs.features import warmup_days
from envs.errors import ConfigError, DataError
from envs.sources import describe_data, market_truth
from evaluation import plots, statistics
from evaluation.backtest import BacktestResult, PolicyStrategy, evaluation_env, metrics_table, run_all
from evaluation.baselines import BaselinesConfig, make_baselines, make_oracles

log = logging.getLogger("evaluation.report")  # not __name__: run as a script, that is "__main__"


def load_agents(models_dir: Path, data: str | None, names: Sequence[str] | None = None) -> list[tuple[str, Any, dict, EnvConfig]]:
    """``(name, policy, metadata, env config)`` of the exported agents in ``models_dir`` (only ``names``, if given),
    with ``data`` replacing the CSV they were trained on when given."""
    from training.export import agent_dirs, load_policy

    dirs = agent_dirs(models_dir)
    if not dirs:
        raise DataError(f"{models_dir}: no exported agents (expected <agent>/metadata.json)")
    if names:
        unknown = sorted(set(names) - {d.name for d in dirs})
        if unknown:
            raise ConfigError(f"--agents: {unknown} not in {models_dir} (it holds {', '.join(d.name for d in dirs)})")
        dirs = [d for d in dirs if d.name in names]
    agents = []
    for agent_dir in dirs:
        policy, meta = load_policy(agent_dir)
        env_config = parse_config(EnvConfig, meta["env_config"], where=f"{agent_dir}/metadata.json")
        agents.append((agent_dir.name, policy, meta, with_data(env_config, data)))
    return agents


def check_comparable(agents: Sequence[tuple[str, Any, dict, EnvConfig]]) -> None:
    """Agents in one report must trade the same test days at the same costs: the same data, splits, cost and
    feature warm-up. Otherwise say which agents go together and how to report each group."""
    groups: dict[tuple, list[str]] = {}
    for name, _, _, config in agents:
        key = (config.data, config.cost_bps, warmup_days(config.window_days, config.vol_window_days))
        groups.setdefault(key, []).append(name)
    if len(groups) > 1:
        described = "; ".join(
            f"{', '.join(names)}: {describe_data(data)} (train_end {data.train_end}, validation_end {data.validation_end}), "
            f"{cost:g} bps, {warmup}-day warm-up"
            for (data, cost, warmup), names in groups.items()
        )
        example = ",".join(next(iter(groups.values())))
        raise ConfigError(
            f"the agents were trained on different data, costs or feature windows, so they cannot share test days: "
            f"{described}. Report one group at a time, e.g. --agents {example}"
        )


def evaluate(
    models_dir: Path, *, data: str | None = None, split: str = "test", baselines: BaselinesConfig | None = None,
    bootstrap_resamples: int = 1000, agents: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Backtest agents and baselines on the same days and compute every statistic of the report."""
    agents = load_agents(models_dir, data, agents)
    check_comparable(agents)
    reference = agents[0][3]
    results: dict[str, BacktestResult] = {}
    for name, policy, _, config in agents:
        results.update(run_all([PolicyStrategy(name, policy.weights)], evaluation_env(config, split)))
    env = evaluation_env(reference, split)
    baselines = baselines or BaselinesConfig()
    if "equal_weight" not in baselines.include:
        raise ConfigError("baselines.include: the report needs equal_weight (PSR and efficiency are measured against it)")
    strategies = make_baselines(env.assets, baselines)
    truth = market_truth(reference.data)
    if truth is not None:
        strategies += make_oracles(truth[0], truth[1], baselines.rebalance_every_days)
    results.update(run_all(strategies, env))
    dates = results["equal_weight"].dates
    for name, result in results.items():
        if not np.array_equal(result.dates, dates):
            raise RuntimeError(f"'{name}' was backtested on other dates than equal_weight")

    agent_names = [a[0] for a in agents]
    n_trials = sum(int((meta.get("sweep") or {}).get("n_trials", 1)) for _, _, meta, _ in agents)
    table = metrics_table(results)
    intervals = {}
    for name, result in results.items():
        # The Sharpe interval is on excess returns, like the table's Sharpe beside it.
        low, high = statistics.sharpe_ci(result.returns - result.rf_daily, n_resamples=bootstrap_resamples)
        r_low, r_high = statistics.annual_return_ci(result.returns, n_resamples=bootstrap_resamples)
        intervals[name] = {"sharpe_ci95": [low, high], "annual_return_ci95": [r_low, r_high]}
    equal_weight_sharpe = table.loc["equal_weight", "sharpe"]
    skill = {
        name: {
            "psr_vs_equal_weight": statistics.probabilistic_sharpe_ratio(results[name].returns - results[name].rf_daily, equal_weight_sharpe),
            "deflated_sharpe": statistics.deflated_sharpe_ratio(results[name].returns - results[name].rf_daily, n_trials),
            "n_trials": n_trials,
        }
        for name in agent_names
    }
    names = list(results)
    pairwise = {a: {b: statistics.paired_comparison(results[a].returns, results[b].returns) for b in names if b != a} for a in names}
    efficiency = None
    if truth is not None:
        g = {name: float(r.log_growth.mean()) for name, r in results.items()}
        gap = g["oracle_constant_mix"] - g["equal_weight"]
        # Undefined when the oracle did not beat equal weight on this window: the ratio would flip sign.
        efficiency = {name: (g[name] - g["equal_weight"]) / gap if gap > 0 else None for name in agent_names}
    return {
        "results": results,
        "agents": agent_names,
        "table": table,
        "intervals": intervals,
        "skill": skill,
        "pairwise": pairwise,
        "efficiency": efficiency,
        "split": split,
        "dates": [str(dates[0]), str(dates[-1])],
        "days": int(dates.size),
        "cost_bps": reference.cost_bps,
        "source": env.market.source,
        "agent_meta": {name: {"algorithm": meta["algorithm"], "content_hash": meta["content_hash"], "sweep": meta.get("sweep")} for name, _, meta, _ in agents},
    }


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def render_html(report: dict[str, Any]) -> str:
    results, agents = report["results"], set(report["agents"])
    rows = report["table"].copy()
    rows.insert(3, "sharpe 95% CI", [f"[{report['intervals'][n]['sharpe_ci95'][0]:.2f}, {report['intervals'][n]['sharpe_ci95'][1]:.2f}]" for n in rows.index])
    rows.insert(1, "annual return 95% CI", [f"[{report['intervals'][n]['annual_return_ci95'][0]:.1%}, {report['intervals'][n]['annual_return_ci95'][1]:.1%}]" for n in rows.index])
    summary = rows.to_html(float_format=lambda v: f"{v:.4f}", classes="summary", border=0)
    skill = pd.DataFrame(report["skill"]).T.to_html(float_format=lambda v: f"{v:.3f}", border=0)
    names = list(results)
    matrix = pd.DataFrame(
        [[("" if a == b else f"{report['pairwise'][a][b]['annualised_difference']:+.1%} (p={report['pairwise'][a][b]['p_value']:.2f})") for b in names] for a in names],
        index=names, columns=names,
    ).to_html(border=0)
    efficiency = ""
    if report["efficiency"] is not None:
        rows_eff = "".join(f"<tr><td>{html.escape(n)}</td><td>{'n/a' if e is None else f'{e:.2f}'}</td></tr>" for n, e in report["efficiency"].items())
        efficiency = (
            "<h2>Efficiency against the oracle (synthetic data)</h2><p>(g<sub>agent</sub> - g<sub>equal weight</sub>) / "
            "(g<sub>oracle constant mix</sub> - g<sub>equal weight</sub>) on this window's mean daily log growth. One window "
            "is noisy: <code>benchmarks/policy_quality.py</code> averages many fresh paths. n/a: on this window the oracle "
            "constant mix did not beat equal weight, so the ratio is undefined.</p>"
            f"<table><tr><th>agent</th><th>efficiency</th></tr>{rows_eff}</table>"
        )
    walk_forward = ""
    if report.get("walk_forward"):
        wf = report["walk_forward"]
        table = metrics_table(wf["results"])
        table.insert(3, "sharpe 95% CI", [f"[{wf['intervals'][n]['sharpe_ci95'][0]:.2f}, {wf['intervals'][n]['sharpe_ci95'][1]:.2f}]" for n in table.index])
        folds = pd.DataFrame(wf["folds"]).to_html(index=False, border=0)
        walk_forward = (
            f"<h2>Walk-forward: {len(wf['folds'])} retrained folds, stitched out-of-sample</h2>"
            f"<p class='note'>Each fold retrains every agent's configuration for {wf['timesteps']} env steps on data before its "
            f"validation window and selects on validation; baselines trade the same days.</p>{folds}"
            + table.to_html(float_format=lambda v: f"{v:.4f}", border=0)
            + _img(plots.equity_curves(wf["results"], agents), "Walk-forward equity curves")
        )
    figures = [
        ("Equity curves", plots.equity_curves(results, agents)),
        ("Drawdowns", plots.drawdown_curves(results, agents)),
        ("Rolling Sharpe", plots.rolling_sharpe(results, agents)),
        ("Turnover", plots.turnover_bars(results)),
    ] + [(f"Weights: {name}", plots.weights_area(results[name])) for name in report["agents"]]
    figure_html = "\n".join(f"<h3>{html.escape(title)}</h3>{_img(png, title)}" for title, png in figures)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rlportfolio report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}} img{{max-width:100%}} .note{{color:#555}}</style></head>
<body>
<h1>Out-of-sample report</h1>
<p>Split <b>{html.escape(report['split'])}</b>: {report['dates'][0]} .. {report['dates'][1]} ({report['days']} trading days) of
{html.escape(report['source'])}; every strategy on exactly these days, from equal weights, with {report['cost_bps']:g} bps costs
on turnover. Agents were selected on validation data only. Intervals: stationary block bootstrap, 95%.</p>
<h2>Summary</h2>{summary}
<h2>Skill after luck</h2><p class="note">Probabilistic Sharpe ratio against equal weight's Sharpe, and deflated Sharpe ratio for
the {report['skill'][report['agents'][0]]['n_trials'] if report['agents'] else 0} sweep trials behind these agents (Bailey &amp; López de Prado).</p>{skill}
<h2>Paired comparisons (row minus column)</h2><p class="note">Annualised mean daily return difference, Newey-West t-test p-value.</p>{matrix}
{efficiency}
{walk_forward}
<h2>Figures</h2>
{figure_html}
<p class="note">Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} by python -m evaluation.report.</p>
</body></html>
"""


def to_json(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "split": report["split"],
        "dates": report["dates"],
        "days": report["days"],
        "cost_bps": report["cost_bps"],
        "source": report["source"],
        "agents": report["agents"],
        "agent_meta": report["agent_meta"],
        "metrics": report["table"].to_dict(orient="index"),
        "intervals": report["intervals"],
        "skill": report["skill"],
        "pairwise": report["pairwise"],
        "efficiency": report["efficiency"],
        "walk_forward": None if not report.get("walk_forward") else {
            "folds": report["walk_forward"]["folds"],
            "timesteps": report["walk_forward"]["timesteps"],
            "metrics": metrics_table(report["walk_forward"]["results"]).to_dict(orient="index"),
            "intervals": report["walk_forward"]["intervals"],
        },
    }


def daily_returns_frame(report: dict[str, Any]) -> pd.DataFrame:
    results = report["results"]
    first = next(iter(results.values()))
    frame = pd.DataFrame({name: r.returns for name, r in results.items()})
    frame.insert(0, "date", pd.to_datetime(first.dates).strftime("%Y-%m-%d"))
    return frame


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "metrics": out / "metrics.json", "daily_returns": out / "daily_returns.csv"}
    paths["html"].write_text(render_html(report))
    paths["metrics"].write_text(json.dumps(to_json(report), indent=1, default=float))
    daily_returns_frame(report).to_csv(paths["daily_returns"], index=False)
    return paths


def log_to_mlflow(report: dict[str, Any], out: Path, tracking_uri: str, experiment: str) -> str:
    import mlflow

    from training.tracking import mlflow_uri

    mlflow.set_tracking_uri(mlflow_uri(tracking_uri))
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"report-{out.name}") as run:
        mlflow.log_params({"split": report["split"], "first_date": report["dates"][0], "last_date": report["dates"][1],
                           "cost_bps": report["cost_bps"], "agents": ",".join(report["agents"])})
        for name, row in report["table"].iterrows():
            mlflow.log_metrics({f"{name}/{key}": float(value) for key, value in row.items() if np.isfinite(value)})
        mlflow.log_artifacts(str(out))
        return run.info.run_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--agents", help="comma-separated agents of --models to report (default: all of them)")
    parser.add_argument("--data", help="price CSV (default: the data the agents were trained on)")
    parser.add_argument("--split", default="test", choices=["test", "validation", "all"])
    parser.add_argument("--out", help="output folder (default reports/<timestamp>)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--config", default="configs/evaluation.yaml", help="baselines config (section 'baselines')")
    parser.add_argument("--walk-forward", type=int, default=0, metavar="K", help="add K retrained walk-forward folds")
    parser.add_argument("--walk-forward-timesteps", type=int, default=20_000, help="env steps per agent and fold")
    parser.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///runs/mlflow.db"))
    parser.add_argument("--mlflow-experiment", default="rlportfolio-reports")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    from training.runtime import setup_console

    setup_console()  # our progress lines, without the libraries' chatter
    out = Path(args.out or f"reports/{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    try:
        raw = load_yaml(args.config).get("baselines") if Path(args.config).is_file() else None
        baselines = parse_config(BaselinesConfig, raw, where=f"{args.config}: baselines")
        names = [a.strip() for a in args.agents.split(",") if a.strip()] if args.agents else None
        report = evaluate(Path(args.models), data=args.data, split=args.split, baselines=baselines,
                          bootstrap_resamples=args.bootstrap, agents=names)
        if args.walk_forward:
            from evaluation.walkforward import walk_forward

            wf = walk_forward(Path(args.models), n_folds=args.walk_forward, timesteps=args.walk_forward_timesteps,
                              runs_dir=out / "walk_forward", data=args.data, baselines=baselines, agents=report["agents"])
            wf["timesteps"] = args.walk_forward_timesteps
            wf["intervals"] = {name: {"sharpe_ci95": list(statistics.sharpe_ci(r.returns, n_resamples=args.bootstrap))}
                               for name, r in wf["results"].items()}
            report["walk_forward"] = wf
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = write_report(report, out)
    if not args.no_mlflow:
        run_id = log_to_mlflow(report, out, args.mlflow_uri, args.mlflow_experiment)
        print(f"logged to MLflow run {run_id}", file=sys.stderr)
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Out-of-sample report: every exported agent and every baseline on exactly the same dates and costs.

    python -m evaluation.report --models models/ [--agents a,b] [--data FILE.csv] [--split test] [--out reports/NAME]
                                [--walk-forward K [--walk-forward-timesteps N]]

Writes ``report.html`` (self-contained, figures embedded), ``metrics.json`` and ``daily_returns.csv`` to ``--out``
and logs them to MLflow as a run of their own. Headline figures come with stationary block-bootstrap 95% intervals;
``--walk-forward K`` adds K retrained out-of-sample folds, stitched (``evaluation.walkforward``). Each agent gets
its probabilistic Sharpe ratio against equal weight and its deflated Sharpe ratio for the number of
sweep trials behind the agents; a matrix of paired tests compares every strategy with every other on the same days.
The page is laid out by ``evaluation.html``.

Exit status: 0; 2 for a bad option or config (e.g. agents that cannot share test days); 1 for unreadable data or models.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backtesting import statistics
from backtesting.backtest import BacktestResult, PolicyStrategy, evaluation_env, metrics_table, run_all
from backtesting.tuning import with_tuned_regime_rate
from core.cli import fail, prog
from core.config import load_yaml, parse_config
from core.errors import ConfigError, DataError
from core.runtime import setup_console
from core.tracking import home_experiment, mlflow_uri
from envs.config import EnvConfig, with_data
from envs.oracle import make_oracles
from envs.regimes import fitted_regime_model
from envs.sources import describe_data, market_truth
from evaluation.held_out import held_out_comparison
from evaluation.html import render_html
from evaluation.records import Report
from evaluation.walkforward import walk_forward
from policies.format import ModelMetadata, agent_dirs, read_registry
from policies.load import load_policy
from policies.policy import Policy
from quant.registry import BaselinesConfig, make_baselines

log = logging.getLogger("evaluation.report")  # not __name__: run as a script, that is "__main__"


def load_agents(
    models_dir: str | Path, data: str | None, names: Sequence[str] | None = None
) -> list[tuple[str, Policy, ModelMetadata, EnvConfig]]:
    """``(name, policy, metadata, env config)`` of the exported agents in ``models_dir`` (only ``names``, if given),
    with ``data`` replacing the CSV they were trained on when given."""

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
        agents.append((agent_dir.name, policy, meta, with_data(meta.env_config, data)))
    return agents


def check_comparable(agents: Sequence[tuple[str, Policy, ModelMetadata, EnvConfig]]) -> None:
    """Agents in one report must trade the same test days at the same costs: the same data, splits, cost and
    feature warm-up. Otherwise say which agents go together and how to report each group."""
    groups: dict[tuple, list[str]] = {}
    for name, _, _, config in agents:
        key = (config.data, config.cost_bps, config.warmup_days)
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
    models_dir: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    baselines: BaselinesConfig | None = None,
    bootstrap_resamples: int = 1000,
    agents: Sequence[str] | None = None,
    held_out_paths: int = 100,
    held_out_days: int = 1000,
) -> Report:
    """Backtest agents and baselines on the same days and compute every statistic of the report."""
    agents = load_agents(models_dir, data, agents)
    check_comparable(agents)
    reference = agents[0][3]
    results: dict[str, BacktestResult] = {}
    for name, policy, _, config in agents:
        results.update(run_all([PolicyStrategy(name, policy.weights)], evaluation_env(config, split)))
    env = evaluation_env(reference, split)
    baselines = baselines or BaselinesConfig()
    registry = read_registry(models_dir)
    gate = None if registry is None else registry.gate
    if baselines.regime_trade_rate is None and gate is not None and gate.regime_trade_rate is not None:
        baselines = baselines.model_copy(update={"regime_trade_rate": gate.regime_trade_rate})  # chosen on validation
    if "equal_weight" not in baselines.include:
        raise ConfigError(
            "baselines.include: the report needs equal_weight (PSR and efficiency are measured against it)"
        )
    regimes = (
        fitted_regime_model(reference, env.market, env.splits["train"])
        if "regime_growth" in baselines.include
        else None
    )
    baselines = with_tuned_regime_rate(baselines, reference, env.market, regimes)  # when no gate chose it
    strategies = make_baselines(env.assets, baselines, regimes, reference.regimes.window_days)
    truth = market_truth(reference.data)
    if truth is not None:
        strategies += make_oracles(truth[0], truth[1], baselines.rebalance_every_days)
    results.update(run_all(strategies, env))
    dates = results["equal_weight"].dates
    for name, result in results.items():
        if not np.array_equal(result.dates, dates):
            raise RuntimeError(f"'{name}' was backtested on other dates than equal_weight")

    agent_names = [a[0] for a in agents]
    n_trials = sum(meta.sweep.n_trials if meta.sweep else 1 for _, _, meta, _ in agents)
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
            "psr_vs_equal_weight": statistics.probabilistic_sharpe_ratio(
                results[name].returns - results[name].rf_daily, equal_weight_sharpe
            ),
            "deflated_sharpe": statistics.deflated_sharpe_ratio(
                results[name].returns - results[name].rf_daily, n_trials
            ),
            "n_trials": n_trials,
        }
        for name in agent_names
    }
    names = list(results)
    pairwise = {
        a: {b: statistics.paired_comparison(results[a].returns, results[b].returns) for b in names if b != a}
        for a in names
    }
    efficiency = None
    if truth is not None:
        # Each agent's edge over equal weight as a share of an oracle's: the filtered oracle (the best a causal
        # investor can do, the yardstick) and the constant mix. Undefined (None) when that oracle did not beat equal
        # weight on this window: the ratio would flip sign.
        g = {name: float(r.log_growth.mean()) for name, r in results.items()}
        efficiency = {}
        for oracle in ("oracle_filtered", "oracle_constant_mix"):
            gap = g[oracle] - g["equal_weight"]
            efficiency[oracle] = {
                n: (g[n] - g["equal_weight"]) / gap if gap > 0 else None
                for n in agent_names + ["regime_growth"]
                if n in g
            }
    held_out = None
    if truth is not None and held_out_paths > 1:
        log.info(f"playing every agent and reference on {held_out_paths} fresh paths of the market's law")
        policies = {name: (policy, meta) for name, policy, meta, _ in agents}
        fitted = regimes or fitted_regime_model(reference, env.market, env.splits["train"])
        held_out = held_out_comparison(policies, reference, truth[0], fitted, paths=held_out_paths, days=held_out_days)
    return Report(
        promoted=None if gate is None else gate.reason,
        held_out=held_out,
        results=results,
        agents=agent_names,
        table=table,
        intervals=intervals,
        skill=skill,
        pairwise=pairwise,
        efficiency=efficiency,
        split=split,
        dates=(str(dates[0]), str(dates[-1])),
        days=int(dates.size),
        cost_bps=reference.cost_bps,
        source=env.market.source,
        agent_meta={
            name: {
                "algorithm": meta.algorithm,
                "content_hash": meta.content_hash,
                "sweep": meta.sweep and meta.sweep.model_dump(),
            }
            for name, _, meta, _ in agents
        },
    )


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """``report.html``, ``metrics.json`` and ``daily_returns.csv`` in ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "metrics": out / "metrics.json", "daily_returns": out / "daily_returns.csv"}
    paths["html"].write_text(render_html(report))
    paths["metrics"].write_text(json.dumps(report.to_json(), indent=1, default=float))
    report.daily_returns().to_csv(paths["daily_returns"], index=False)
    return paths


def log_to_mlflow(report: Report, out: Path, tracking_uri: str, experiment: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri(tracking_uri))
    mlflow.set_experiment(experiment_id=home_experiment(tracking_uri, experiment))  # artifacts beside the store
    with mlflow.start_run(run_name=f"report-{out.name}") as run:
        mlflow.log_params(
            {
                "split": report.split,
                "first_date": report.dates[0],
                "last_date": report.dates[1],
                "cost_bps": report.cost_bps,
                "agents": ",".join(report.agents),
            }
        )
        for name, row in report.table.iterrows():
            mlflow.log_metrics({f"{name}/{key}": float(value) for key, value in row.items() if np.isfinite(value)})
        mlflow.log_artifacts(str(out))
        return run.info.run_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("evaluation.report"), description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="models", help="exported agents: a folder or a storage URI (s3://bucket/models)"
    )
    parser.add_argument("--agents", help="comma-separated agents of --models to report (default: all of them)")
    parser.add_argument("--data", help="price CSV (default: the data the agents were trained on)")
    parser.add_argument("--split", default="test", choices=["test", "validation", "all"])
    parser.add_argument("--out", help="output folder (default reports/<timestamp>)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--config", default="configs/evaluation.yaml", help="baselines config (section 'baselines')")
    parser.add_argument(
        "--held-out-paths", type=int, default=100, help="synthetic data: fresh paths of the law to play (0: none)"
    )
    parser.add_argument("--held-out-days", type=int, default=1000, help="trading days per held-out path")
    parser.add_argument("--walk-forward", type=int, default=0, metavar="K", help="add K retrained walk-forward folds")
    parser.add_argument("--walk-forward-timesteps", type=int, default=20_000, help="env steps per agent and fold")
    parser.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///runs/mlflow.db"))
    parser.add_argument("--mlflow-experiment", default="rlportfolio-reports")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    setup_console()  # our progress lines, without the libraries' chatter
    out = Path(args.out or f"reports/{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    try:
        raw = load_yaml(args.config).get("baselines") if Path(args.config).is_file() else None
        baselines = parse_config(BaselinesConfig, raw, where=f"{args.config}: baselines")
        names = [a.strip() for a in args.agents.split(",") if a.strip()] if args.agents else None
        report = evaluate(
            args.models,
            data=args.data,
            split=args.split,
            baselines=baselines,
            bootstrap_resamples=args.bootstrap,
            agents=names,
            held_out_paths=args.held_out_paths,
            held_out_days=args.held_out_days,
        )
        if args.walk_forward:
            wf = walk_forward(
                args.models,
                n_folds=args.walk_forward,
                timesteps=args.walk_forward_timesteps,
                runs_dir=out / "walk_forward",
                data=args.data,
                baselines=baselines,
                agents=report.agents,
                bootstrap_resamples=args.bootstrap,
            )
            report = dataclasses.replace(report, walk_forward=wf)
    except (ConfigError, DataError) as exc:
        return fail(exc)
    paths = write_report(report, out)
    if not args.no_mlflow:
        run_id = log_to_mlflow(report, out, args.mlflow_uri, args.mlflow_experiment)
        print(f"logged to MLflow run {run_id}", file=sys.stderr)
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

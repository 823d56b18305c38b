"""``make demo``: the main job, end to end, on the built-in synthetic market (the default data of every command);
``--sample etf-factors`` (or ``--data FILE.csv``) runs the same on real prices, with its models in ``models/<name>``.

1. Describe the data: assets, dates, splits and, on the built-in market, what its true law lets an oracle earn.
2. Backtest every classical baseline and both oracles on the test split, costs on.
3. Sweep DQN, SAC and PPO with Ray Tune (``configs/sweep.yaml``: ASHA, MLflow, TensorBoard) and export the best
   policy per algorithm to ``models/``.
4. Play the exported agents on the same test days, print them beside the baselines and the oracles, and write
   the out-of-sample HTML report (``reports/demo``) with intervals, deflated Sharpe and figures.
5. Serve the two best agents with Ray Serve under a 50/50 A/B split, replay test days through ``/allocate`` (a few
   clients a day), report each day's per-asset returns as feedback, and print the A/B statistics: paired by trading
   day (every agent scored on every request) beside the unpaired per-request ones.

Progress goes to stderr, results to stdout. ``--skip-training`` reuses the agents already in ``models/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd

from backtesting.backtest import evaluation_env, metrics_table, run_all
from backtesting.tuning import with_tuned_regime_rate
from core.cli import fail
from core.config import CONFIG_DIR, load_yaml, parse_config
from core.errors import ConfigError, DataError
from core.runtime import setup_console
from envs.config import load_env_config, with_data
from envs.oracle import make_oracles, oracle_report
from envs.regimes import fitted_regime_model
from envs.samples import SAMPLES, write_sample
from envs.sources import data_tag, describe_data, market_truth
from quant.registry import BaselinesConfig, make_baselines

log = logging.getLogger("demo")


def step(message: str) -> None:
    log.info(f"\n==> {message}")


def print_table(title: str, table: pd.DataFrame) -> None:
    print(f"\n{title}")
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(table, flush=True)


def print_market(env_config, env) -> None:
    """A few lines on the built-in market, its splits and its true law's oracles."""
    market, splits = env.market, env.splits
    print(
        f"\n{describe_data(env_config.data)}: {', '.join(market.assets)}; {market.n_days:,} days "
        f"{market.dates[0]} .. {market.dates[-1]}"
    )
    print(
        "splits: "
        + ", ".join(
            f"{name} {market.dates[s.first]} .. {market.dates[s.last]} ({s.n_days:,} days)"
            for name, s in splits.items()
            if name != "all"
        )
    )
    truth = market_truth(env_config.data)
    if truth is not None:
        oracle = oracle_report(truth[0])
        mix = ", ".join(f"{a} {w:.0%}" for a, w in oracle["constant_mix"]["weights"].items() if w > 0.005)
        print(
            f"true law, expected daily log growth before costs: equal weight {oracle['equal_weight_daily_log_growth']:.6f}, "
            f"oracle constant mix {oracle['constant_mix']['daily_log_growth']:.6f} ({mix}), regime-aware oracle "
            f"{oracle['regime_aware_daily_log_growth']:.6f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep-config", default="configs/sweep.yaml")
    parser.add_argument(
        "--sample", choices=sorted(SAMPLES), help="real prices built in: written to data/<name>.csv first"
    )
    parser.add_argument("--data", help="your own price CSV instead of the built-in market")
    parser.add_argument(
        "--models", help="where the agents go (default models/, or models/<data name> with --sample/--data)"
    )
    parser.add_argument("--skip-training", action="store_true", help="reuse the agents already exported to --models")
    parser.add_argument("--skip-serving", action="store_true", help="stop after the report")
    parser.add_argument("--report", default="reports/demo", help="report folder")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port of the Serve demo")
    parser.add_argument("--no-dashboard", action="store_true", help="run Ray without its dashboard")
    parser.add_argument(
        "--held-out-paths", type=int, default=100, help="fresh paths of the law the agents are compared on"
    )
    args = parser.parse_args(argv)
    setup_console()
    started = time.perf_counter()

    try:
        if args.sample:
            args.data = f"data/{args.sample}.csv"
            write_sample(args.sample, args.data)
        env_config = with_data(load_env_config(), args.data)
        args.models = args.models or ("models" if args.data is None else f"models/{data_tag(env_config.data)}")
        baselines_config = parse_config(
            BaselinesConfig,
            load_yaml(CONFIG_DIR / "evaluation.yaml").get("baselines"),
            where="configs/evaluation.yaml: baselines",
        )
        where = "the built-in synthetic market (configs/env.yaml, data.path: null)" if args.data is None else args.data
        step(f"1/5 the data: {where}")
        env = evaluation_env(env_config, "test")
        print_market(env_config, env)
        regimes = fitted_regime_model(env_config, env.market, env.splits["train"])
        # regime_growth trades at the rate that earns most on validation (costs on), as the promotion gate chooses it
        baselines_config = with_tuned_regime_rate(baselines_config, env_config, env.market, regimes)
    except (ConfigError, DataError) as exc:
        return fail(exc)

    truth = market_truth(env_config.data)
    step("2/5 classical baselines" + (" and oracles" if truth else "") + " on the test split (costs on)")
    strategies = make_baselines(env.assets, baselines_config, regimes, env_config.regimes.window_days)
    if truth is not None:
        strategies += make_oracles(truth[0], truth[1], baselines_config.rebalance_every_days)
    baseline_results = run_all(strategies, env)
    dates = next(iter(baseline_results.values())).dates
    print_table(
        f"Test split {dates[0]} .. {dates[-1]} ({len(dates)} trading days), costs {env_config.cost_bps:g} bps:",
        metrics_table(baseline_results),
    )

    if not args.skip_training:
        step(f"3/5 Tune sweep of DQN, SAC and PPO ({args.sweep_config}), one line per trial iteration")
        from training.sweep import main as sweep_main

        extra = ["--no-dashboard"] if args.no_dashboard else []
        data = ["--data", args.data] if args.data else []
        code = sweep_main(["--config", args.sweep_config, "--models-dir", args.models, *data, *extra])
        import ray

        ray.shutdown()
        if code != 0:
            print("error: the sweep failed; see the messages above", file=sys.stderr)
            return code

    step("4/5 exported agents on the same test days, and the out-of-sample report")
    from evaluation.report import evaluate, log_to_mlflow, write_report

    try:
        report = evaluate(
            Path(args.models), split="test", baselines=baselines_config, held_out_paths=args.held_out_paths
        )
    except (ConfigError, DataError) as exc:
        return fail(exc)
    if report.dates != (str(dates[0]), str(dates[-1])):
        raise RuntimeError("the agents were tested on other days than the baselines above")
    print_table(
        f"Agents (selected on validation only) vs baselines, test split {dates[0]} .. {dates[-1]}:", report.table
    )
    if report.held_out is not None:
        print(held_out_text(report.held_out.summary()))
    paths = write_report(report, Path(args.report))
    log_to_mlflow(
        report,
        Path(args.report),
        os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///runs/mlflow.db"),
        "rlportfolio-reports",
    )
    print(f"\nReport: {paths['html'].resolve()}")
    if report.promoted:  # the promotion gate's decision on validation (registry.json): what `rlportfolio serve` serves
        print(f"Served by default: {report.promoted}")
    else:
        print("Served by default: no promotion gate has run on these agents yet (every agent equally)")

    if not args.skip_serving:
        step("5/5 Ray Serve: A/B split between the two best agents, a burst of /allocate calls with feedback")
        serve_burst(args.models, env, args.port, dashboard=not args.no_dashboard)
    log.info(f"\nDemo finished in {time.perf_counter() - started:.0f} s")
    return 0


def held_out_text(summary: dict) -> str:
    """The many-path comparison in a few lines: growth, turnover and efficiency against the two oracles."""
    lines = [
        f"\nOne test window is one draw of a noisy path. Skill apart from luck: {summary['paths']} fresh paths of the "
        f"law, {summary['days_per_path']} days each (seeds {summary['seeds'][0]}-{summary['seeds'][1]}), same costs:",
        f"{'strategy':<22}{'log growth bp/day':>20}{'minus equal weight':>22}{'turnover/yr':>13}"
        f"{'efficiency vs filtered oracle':>32}{'vs constant mix':>24}",
    ]
    for name, s in summary["strategies"].items():
        cells = []
        for oracle in ("oracle_filtered", "oracle_constant_mix"):
            e = summary["efficiency"][oracle].get(name)
            cells.append("" if e is None else f"{e['value']:+.2f} [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}]")
        growth = f"{1e4 * s['mean_daily_log_growth']:+.2f} +/- {1e4 * s['stderr']:.2f}"
        d = summary["vs_equal_weight"].get(name)
        edge = (
            ""
            if d is None
            else f"{1e4 * d['mean_daily_difference']:+.2f} [{1e4 * d['ci95'][0]:+.2f}, {1e4 * d['ci95'][1]:+.2f}]"
        )
        lines.append(f"{name:<22}{growth:>20}{edge:>22}{s['annual_turnover']:>13.1f}{cells[0]:>32}{cells[1]:>24}")
    lines.append(
        "(minus equal weight: paired difference on the same paths, bp/day [95% interval]; an agent whose "
        "interval lies above 0 beats equal weight beyond luck)"
    )
    return "\n".join(lines)


def ab_table(stats: dict) -> str:
    """``/ab/stats`` in a few lines: one row per arm, one per comparison."""
    lines = [
        f"{'arm':<16}{'requests':>9}{'errors':>7}{'p50 ms':>8}{'p95 ms':>8}{'feedback':>9}{'mean return':>13}{'std':>9}"
    ]
    for name, arm in stats["arms"].items():
        latency = arm.get("latency_ms") or {}
        mean = arm.get("mean_return")
        std = arm.get("std_return")
        lines.append(
            f"{name:<16}{arm['requests']:>9}{arm['errors']:>7}{latency.get('p50', float('nan')):>8.2f}"
            f"{latency.get('p95', float('nan')):>8.2f}{arm['feedback']:>9}"
            f"{'-' if mean is None else f'{mean:+.5f}':>13}{'-' if std is None else f'{std:.5f}':>9}"
        )
    for c in stats.get("comparisons", []):
        seq = c["sequential"]
        lines.append(
            f"unpaired, by request: {c['challenger']} vs {c['control']} (control): {c['verdict']}; difference "
            f"{c['mean_difference']:+.5f}, always-valid 95% interval [{seq['lower']:+.5f}, {seq['upper']:+.5f}]"
        )
    for c in stats.get("paired", []):
        seq, ratio = c["sequential"], c["variance_ratio"]
        if c["mean_daily_difference"] is None:
            continue
        lines.append(
            f"paired, by trading day: {c['challenger']} - {c['control']} {1e4 * c['mean_daily_difference']:+.2f} bp/day "
            f"over {c['days']} days, always-valid 95% interval [{1e4 * seq['lower']:+.1f}, {1e4 * seq['upper']:+.1f}] bp; "
            f"paired variance {'-' if ratio is None else f'{ratio:.3f}'} of unpaired; {c['verdict']}"
        )
    ratio = stats.get("sample_ratio")
    if ratio:
        lines.append(f"sample-ratio test: p = {ratio['p_value']:.3g} ({'MISMATCH' if ratio['mismatch'] else 'ok'})")
    return "\n".join(lines)


def serve_burst(models: str, env, port: int, days: int = 100, clients: int = 4, dashboard: bool = True) -> None:
    """Deploy the app and replay ``days`` consecutive test days through it, ``clients`` sticky clients a day, each
    request for its trading day (``as_of``), with that day's per-asset returns as feedback."""
    import httpx
    import ray
    from ray import serve

    from core.runtime import init_ray
    from serving.builder import build_app
    from serving.lifecycle import shutdown_serve, use_throughput_mode

    registry = json.loads((Path(models) / "registry.json").read_text())
    ranked = sorted(
        registry["agents"],
        key=lambda n: registry["agents"][n]["validation"].get("mean_daily_log_growth", -1e9),
        reverse=True,
    )
    split = {name: 0.5 for name in ranked[:2]} if len(ranked) > 1 else {ranked[0]: 1.0}
    use_throughput_mode()
    init_ray(dashboard=dashboard)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"models_dir": models, "split": split}), name="rlportfolio", route_prefix="/")
    closes, assets = env.market.closes, env.assets
    first = env.split.first - 1
    replayed = range(first, min(first + days, env.split.last))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        window = max(agent["closes_needed"] for agent in client.get("/agents").json())
        for day in replayed:
            prices = {a: closes[day - window + 1 : day + 1, k].tolist() for k, a in enumerate(assets)}
            as_of = str(env.market.dates[day])
            returns = dict(zip(assets, (closes[day + 1] / closes[day] - 1.0).tolist()))
            for c in range(clients):
                body = {"prices": prices, "client_id": f"client-{c}", "as_of": as_of}
                answer = client.post("/allocate", json=body).json()
                client.post("/feedback", json={"request_id": answer["request_id"], "asset_returns": returns})
        stats = client.get("/ab/stats").json()
    print(
        f"\nA/B statistics after {len(replayed)} test days x {clients} clients (split "
        f"{', '.join(f'{n} {w:.0%}' for n, w in split.items())}; every deployed agent scored on every request; "
        "the whole record: GET /ab/stats):"
    )
    print(ab_table(stats))
    shutdown_serve()
    ray.shutdown()
    split_arg = ",".join(f"{n}={w}" for n, w in split.items())
    print(
        f"\nTo keep serving: .venv/bin/python -m serving.app --models {models} --split {split_arg} --port {port}"
        f"   (API docs at http://127.0.0.1:{port}/docs)"
    )


if __name__ == "__main__":
    sys.exit(main())

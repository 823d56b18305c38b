"""``make demo``: the main job, end to end, on the built-in synthetic market.

1. Write the default synthetic market (``data/synthetic.csv`` + true parameters) and validate it.
2. Backtest every classical baseline and both oracles on the test split, costs on.
3. Sweep DQN, SAC and PPO with Ray Tune (``configs/sweep.yaml``: ASHA, MLflow, TensorBoard) and export the best
   policy per algorithm to ``models/``.
4. Play the exported agents on the same test days, print them beside the baselines and the oracles, and write
   the out-of-sample HTML report (``reports/demo``) with intervals, deflated Sharpe and figures.
5. Serve the two best agents with Ray Serve under a 50/50 A/B split, send a burst of ``/allocate`` calls for test
   days, report each answer's realised next-day return as feedback, and print ``/ab/stats``.

Progress goes to stderr, results to stdout. ``--skip-training`` reuses the agents already in ``models/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd

from envs.config import EnvConfig, load_yaml, parse_config
from envs.data import main as data_main
from envs.errors import ConfigError, DataError
from envs.synthetic import load_params, params_path
from evaluation.backtest import evaluation_env, metrics_table, run_all
from evaluation.baselines import BaselinesConfig, make_baselines, make_oracles

log = logging.getLogger("demo")


def step(message: str) -> None:
    print(f"\n==> {message}", file=sys.stderr, flush=True)


def print_table(title: str, table: pd.DataFrame) -> None:
    print(f"\n{title}")
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/synthetic.csv", help="where to write the synthetic market")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sweep-config", default="configs/sweep.yaml")
    parser.add_argument("--models", default="models")
    parser.add_argument("--skip-training", action="store_true", help="reuse the agents already exported to --models")
    parser.add_argument("--skip-serving", action="store_true", help="stop after the report")
    parser.add_argument("--report", default="reports/demo", help="report folder")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port of the Serve demo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    started = time.perf_counter()

    step(f"1/5 synthetic market -> {args.data}")
    if data_main(["synth", "--out", args.data, "--seed", str(args.seed)]) != 0:
        return 1
    if data_main(["validate", args.data]) != 0:
        return 1

    step("2/5 classical baselines and oracles on the test split (costs on)")
    env_config = parse_config(EnvConfig, load_yaml("configs/env.yaml"), where="configs/env.yaml")
    env_config = env_config.model_copy(update={"data": env_config.data.model_copy(update={"path": str(Path(args.data).resolve())})})
    baselines_config = parse_config(
        BaselinesConfig, load_yaml("configs/evaluation.yaml").get("baselines"), where="configs/evaluation.yaml: baselines"
    )
    env = evaluation_env(env_config, "test")
    params, regime_path = load_params(args.data)
    strategies = make_baselines(env.assets, baselines_config) + make_oracles(params, regime_path, baselines_config.rebalance_every_days)
    baseline_results = run_all(strategies, env)
    dates = next(iter(baseline_results.values())).dates
    print_table(
        f"Test split {dates[0]} .. {dates[-1]} ({len(dates)} trading days), costs {env_config.cost_bps:g} bps:",
        metrics_table(baseline_results),
    )

    if not args.skip_training:
        step(f"3/5 Tune sweep of DQN, SAC and PPO ({args.sweep_config}); progress below, MLflow in runs/mlflow.db")
        from training.sweep import main as sweep_main

        name = f"demo-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
        code = sweep_main(["--config", args.sweep_config, "--data", args.data, "--name", name, "--models-dir", args.models])
        import ray

        ray.shutdown()
        if code != 0:
            print("error: the sweep failed; see the messages above", file=sys.stderr)
            return code

    step("4/5 exported agents on the same test days, and the out-of-sample report")
    from evaluation.report import evaluate, log_to_mlflow, write_report

    try:
        report = evaluate(Path(args.models), data=args.data, split="test", baselines=baselines_config)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if report["dates"] != [str(dates[0]), str(dates[-1])]:
        raise RuntimeError("the agents were tested on other days than the baselines above")
    print_table(f"Agents (selected on validation only) vs baselines, test split {dates[0]} .. {dates[-1]}:", report["table"])
    oracle = json.loads(params_path(args.data).read_text())["oracle"]
    print(
        "\nTrue law (expected daily log growth, before costs): "
        f"oracle constant mix {oracle['constant_mix']['daily_log_growth']:.6f} "
        f"{oracle['constant_mix']['weights']}, regime-aware oracle {oracle['regime_aware_daily_log_growth']:.6f}, "
        f"equal weight {oracle['equal_weight_daily_log_growth']:.6f}"
    )
    print(
        "\nOne test window is one draw of a noisy path: compare agents to the oracles over many fresh paths with "
        "`python benchmarks/policy_quality.py`."
    )
    paths = write_report(report, Path(args.report))
    log_to_mlflow(report, Path(args.report), os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///runs/mlflow.db"), "rlportfolio-reports")
    print(f"\nReport: {paths['html'].resolve()}")

    if not args.skip_serving:
        step("5/5 Ray Serve: A/B split between the two best agents, a burst of /allocate calls with feedback")
        serve_burst(args.models, args.data, env, args.port)
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


def serve_burst(models: str, data: str, env, port: int, requests: int = 200) -> None:
    """Deploy the app, allocate for ``requests`` test days (sticky client ids), feed back realised returns."""
    import httpx
    import numpy as np
    import ray
    from ray import serve

    from serving.app import build_app, use_throughput_mode

    registry = json.loads((Path(models) / "registry.json").read_text())
    ranked = sorted(registry["agents"], key=lambda n: registry["agents"][n]["validation"].get("log_growth", -1e9), reverse=True)
    split = {name: 0.5 for name in ranked[:2]} if len(ranked) > 1 else {ranked[0]: 1.0}
    use_throughput_mode()
    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"models_dir": models, "split": split}), name="rlportfolio", route_prefix="/")
    closes, assets = env.market.closes, env.assets
    days = np.linspace(env.split.first - 1, env.split.last - 1, requests).astype(int)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        window = max(agent["closes_needed"] for agent in client.get("/agents").json())
        for i, day in enumerate(days):
            prices = {a: closes[day - window + 1 : day + 1, k].tolist() for k, a in enumerate(assets)}
            answer = client.post("/allocate", json={"prices": prices, "client_id": f"client-{i % 40}"}).json()
            weights = np.array([answer["weights"][a] for a in assets])
            realised = float(weights @ (closes[day + 1] / closes[day]) - 1.0)
            client.post("/feedback", json={"request_id": answer["request_id"], "realized_return": realised})
        stats = client.get("/ab/stats").json()
    print(f"\nA/B statistics after {requests} requests (split {split}):")
    print(json.dumps(stats, indent=1))
    serve.shutdown()
    ray.shutdown()
    print(
        "\nTo keep serving: .venv/bin/python -m serving.app --models models --split "
        + ",".join(f"{n}={w}" for n, w in split.items())
        + f" --port {port}   (or: RAY_SERVE_THROUGHPUT_OPTIMIZED=1 RAY_SERVE_ENABLE_HA_PROXY=1 serve run configs/serve.yaml); API docs at http://127.0.0.1:{port}/docs"
    )


if __name__ == "__main__":
    sys.exit(main())

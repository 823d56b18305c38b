"""Every stage at 4, 20, 50 and 200 assets in one run, each as a ratio to 4 assets. Prints JSON.

    python benchmarks/universe_scale.py [--assets 4 20 50 200] [--seconds 45] [--requests 200] [--algos ppo sac dqn]
                                        [--out runs/universe_scale] [--skip-training] [--no-serve]

For each universe size ``K`` (the built-in synthetic regime market with ``data.synthetic_assets: K``):

- ``env``: the batched ``PortfolioVectorEnv`` (256 sub-environments, ``configs/env.yaml``: a fresh law path per
  episode, regime probabilities observed) stepping random actions: env steps/s and microseconds per asset-step (the
  cost per asset should stay flat or fall as ``K`` grows).
- ``ppo``, ``sac``, ``dqn``: each algorithm's project config (``configs/<algo>.yaml``) with the asset-shared module
  (``model.kind: asset_shared``; DQN with factored actions, ``discrete_actions: factored``) trained for ``--seconds``
  by ``training.train`` (validation included, as in a real run); env steps sampled per second.
- ``allocate``: the PPO agent just trained, copied to a folder of its own and served alone (with the app's default
  baselines) by ``python -m serving.app``; ``--requests`` sequential ``POST /allocate`` calls with that universe's
  closes, each body encoded before its clock starts (the client's JSON encoding is not the server's latency); p50
  and p95 latency.

Ratios are to the 4-asset figure of the same run; ``speed_probe_ms`` (a fixed Python loop) is measured beside each
figure, since this machine's speed drifts by up to 2x within minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_load import speed_probe_ms, start, stop, wait_ready  # noqa: E402

ALGO_OVERRIDES: dict[str, dict[str, Any]] = {
    "ppo": {"model": {"kind": "asset_shared"}},
    "sac": {"model": {"kind": "asset_shared"}},
    "dqn": {"model": {"kind": "asset_shared"}, "env": {"discrete_actions": "factored"}},
}


def env_config(n_assets: int) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "configs" / "env.yaml").read_text())
    config["data"]["synthetic_assets"] = n_assets
    return config


def measure_env(n_assets: int, num_envs: int = 256, vector_steps: int = 300) -> dict[str, Any]:
    from envs.vector_env import PortfolioVectorEnv

    started = time.perf_counter()
    env = PortfolioVectorEnv(env_config(n_assets), num_envs=num_envs)
    build_s = time.perf_counter() - started
    actions = np.random.default_rng(0).uniform(-1, 1, size=(vector_steps, num_envs, n_assets)).astype(np.float32)
    env.reset(seed=0)
    probe = speed_probe_ms()
    started = time.perf_counter()
    for action in actions:
        env.step(action)
    elapsed = time.perf_counter() - started
    steps = num_envs * vector_steps
    return {
        "env_steps_per_s": round(steps / elapsed),
        "us_per_asset_step": round(1e6 * elapsed / (steps * n_assets), 3),
        "build_s_incl_regime_fit": round(build_s, 1),
        "observation_size": int(env.single_observation_space.shape[0]),
        "speed_probe_ms": probe,
    }


def measure_training(algo: str, n_assets: int, seconds: float, models: Path, runs: Path) -> dict[str, Any]:
    from training.config import resolve_train_config
    from training.train import train

    overrides = json.loads(json.dumps(ALGO_OVERRIDES[algo]))
    overrides.setdefault("env", {})["data"] = {"synthetic_assets": n_assets}
    overrides |= {"timesteps": None, "time_budget_s": seconds, "validate_every_steps": 10**9}
    config = resolve_train_config(algo, None, overrides=overrides)
    probe = speed_probe_ms()
    summary = train(config, agent=f"{algo}-{n_assets}", runs_dir=runs, models_dir=models, dashboard=False, gate=False)
    return {
        "env_steps": summary["env_steps"],
        "seconds": summary["seconds"],
        "env_steps_per_s": summary["env_steps_per_second"],
        "speed_probe_ms": probe,
    }


def measure_allocate(models: Path, agent: str, requests: int, port: int = 8000) -> dict[str, Any]:
    from envs.sources import load_market
    from policies.format import read_metadata

    alone = models.parent / f"{models.name}-{agent}-alone"  # the SAC and DQN agents beside it would be scored too
    shutil.rmtree(alone, ignore_errors=True)
    shutil.copytree(models / agent, alone / agent)
    meta = read_metadata(alone / agent)
    market = load_market(meta.env_config.data)
    needed = meta.closes_needed
    days = np.random.default_rng(0).integers(needed, market.n_days, size=requests + 20)
    bodies = [
        json.dumps(
            {"prices": {a: market.closes[d - needed + 1 : d + 1, k].tolist() for k, a in enumerate(market.assets)}}
        ).encode()
        for d in days
    ]
    headers = {"Content-Type": "application/json"}
    url = f"http://127.0.0.1:{port}"
    server = start(["-m", "serving.app", "--models", str(alone), "--split", f"{agent}=1"], dict(os.environ))
    try:
        wait_ready(url, "/health", timeout_s=240)
        latencies = []
        with httpx.Client(timeout=60) as client:
            deadline = time.monotonic() + 240  # /health answers (404) before Serve's proxy has the app's routes
            while (
                client.post(f"{url}/allocate", content=bodies[0], headers=headers).status_code == 404
                and time.monotonic() < deadline
            ):
                time.sleep(1)
            for i, body in enumerate(bodies):
                started = time.perf_counter()
                response = client.post(f"{url}/allocate", content=body, headers=headers)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if i >= 20:  # the first calls warm the replicas
                    latencies.append(1000 * elapsed)
        probe = speed_probe_ms()
    finally:
        stop(server, ray=True)
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "body_kb": round(len(bodies[0]) / 1024, 1),
        "closes_per_asset": needed,
        "speed_probe_ms": probe,
    }


def with_ratios(by_size: dict[int, dict[str, Any]], key: str, base: int) -> None:
    reference = by_size[base].get(key)
    for figures in by_size.values():
        if reference and figures.get(key) is not None:
            figures[f"ratio_to_{base}_assets"] = round(figures[key] / reference, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, nargs="+", default=[4, 20, 50, 200])
    parser.add_argument("--seconds", type=float, default=45.0, help="training time per algorithm and size")
    parser.add_argument("--requests", type=int, default=200, help="sequential /allocate calls per size")
    parser.add_argument("--algos", nargs="+", default=["ppo", "sac", "dqn"], choices=sorted(ALGO_OVERRIDES))
    parser.add_argument("--no-serve", action="store_true", help="skip the /allocate measurement")
    parser.add_argument("--out", default="runs/universe_scale", help="agents, runs and the JSON so far")
    parser.add_argument(
        "--skip-training", action="store_true", help="only /allocate, with the PPO agents already in --out"
    )
    args = parser.parse_args(argv)

    from core.runtime import setup_console

    setup_console()
    base = args.assets[0]
    report: dict[str, Any] = {
        "benchmark": "universe_scale",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "assets": args.assets,
        "seconds_per_training": args.seconds,
    }
    stages: dict[str, dict[int, dict[str, Any]]] = {"env": {}, **{a: {} for a in args.algos}, "allocate": {}}
    out = Path(args.out)
    models, runs = out / "models", out / "runs"
    partial = out / "universe_scale.json"  # rewritten after every measurement: a failure keeps what was measured
    out.mkdir(parents=True, exist_ok=True)
    keys = {"env": "env_steps_per_s", "allocate": "p50_ms", **{a: "env_steps_per_s" for a in args.algos}}

    def record(stage: str, n_assets: int, figures: dict[str, Any]) -> None:
        stages[stage][n_assets] = figures
        with_ratios(stages[stage], keys[stage], base)
        report["stages"] = {s: {str(k): v for k, v in by.items()} for s, by in stages.items() if by}
        partial.write_text(json.dumps(report, indent=2))

    if not args.skip_training:
        for n_assets in args.assets:
            print(f"universe_scale: {n_assets} assets: vector env ...", file=sys.stderr, flush=True)
            record("env", n_assets, measure_env(n_assets))
            for algo in args.algos:
                print(
                    f"universe_scale: {n_assets} assets: {algo} {args.seconds:.0f} s ...", file=sys.stderr, flush=True
                )
                record(algo, n_assets, measure_training(algo, n_assets, args.seconds, models / str(n_assets), runs))
        import ray

        if ray.is_initialized():
            ray.shutdown()
    if not args.no_serve and "ppo" in args.algos:
        for n_assets in args.assets:
            print(f"universe_scale: {n_assets} assets: /allocate ...", file=sys.stderr, flush=True)
            record("allocate", n_assets, measure_allocate(models / str(n_assets), f"ppo-{n_assets}", args.requests))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the asset-shared modules (``model.kind: asset_shared``) cost beside RLlib's MLPs (``mlp``). Prints JSON.

    python benchmarks/asset_shared_speed.py [--part forward|train|all] [--assets 4 20 50 200]
        [--train-assets 4 20] [--algos ppo sac] [--seconds 40] [--base none] [--repeats 5] [--threads N]

- ``forward``: one inference forward pass (``module._forward_inference`` under ``torch.inference_mode``, what
  ``policies.policy.Policy`` and the env runners call) of the project's PPO and SAC modules (``configs/<algo>.yaml``:
  sizes, activation, squash; regime probabilities and the residual base observed) at each universe size: one
  observation (serving) and 256 (``configs/ppo.yaml``'s vector env), in microseconds per call and per row. The MLP
  is built for each ``K`` (its input grows with ``K``); the asset-shared module is built once, for 4 assets, and run
  on every ``K``. Median of ``--repeats`` timing loops, the modules interleaved so the machine's drift hits all alike.
- ``train``: env steps sampled per second of ``algorithm.train()`` on the built-in synthetic market with
  ``data.synthetic_assets: K``, the project config otherwise (``regimes.n_regimes: 3`` instead of ``bic``, to skip
  the BIC search; ``--base``: another residual base), mlp and asset_shared in turn, after warm-up iterations (PPO:
  one; SAC: until learning started), validation off (``validate_every_steps`` past the run; ``forward`` measures
  the module's share of it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

N_REGIMES = 3


def speed_probe_ms() -> float:
    """A fixed pure-Python loop: the machine's speed at the time of a figure (it drifts)."""
    started = time.perf_counter()
    total = 0
    for i in range(300_000):
        total += i % 7
    return round((time.perf_counter() - started) * 1000, 1)


def modules(algo: str, n_assets: int, shared_module=None) -> dict[str, Any]:
    """``{"mlp": ..., "asset_shared": ...}`` inference-only modules of ``configs/<algo>.yaml`` for ``n_assets``."""
    from envs.layout import AssetLayout
    from policies.asset_heads import SharedModelConfig
    from training.algorithms import build_algorithm_config
    from training.config import resolve_train_config

    config = resolve_train_config(algo)
    layout = AssetLayout.of_env(config.env, N_REGIMES)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (layout.size(n_assets),), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (n_assets,), np.float32)
    spec = build_algorithm_config(config).get_rl_module_spec(
        spaces={"default_policy": (obs_space, action_space)}, inference_only=True
    )
    if shared_module is None:
        from policies.shared_ppo import AssetSharedPPOModule
        from policies.shared_sac import AssetSharedSACModule

        module_class = AssetSharedPPOModule if algo == "ppo" else AssetSharedSACModule
        shared = SharedModelConfig(layout, config.model.hidden, config.model.activation, config.model.squash)
        shared_module = module_class(
            observation_space=gym.spaces.Box(-np.inf, np.inf, (layout.size(4),), np.float32),
            action_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
            model_config=shared.to_model_config() | {"twin_q": True},
            inference_only=True,
        )
    return {"mlp": spec.build().eval(), "asset_shared": shared_module.eval(), "layout": layout}


def time_forward(module, obs: torch.Tensor, calls: int) -> float:
    """Seconds per ``_forward_inference`` call, over ``calls`` calls."""
    with torch.inference_mode():
        module._forward_inference({"obs": obs})
        started = time.perf_counter()
        for _ in range(calls):
            module._forward_inference({"obs": obs})
    return (time.perf_counter() - started) / calls


def measure_forward(algos: list[str], sizes: list[int], repeats: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for algo in algos:
        shared = None
        for n_assets in sizes:
            built = modules(algo, n_assets, shared)
            shared, layout = built["asset_shared"], built["layout"]
            rng = np.random.default_rng(0)
            row: dict[str, Any] = {"observation_size": layout.size(n_assets), "speed_probe_ms": speed_probe_ms()}
            for batch, calls in ((1, 400), (256, 40)):
                obs = torch.from_numpy(rng.normal(size=(batch, layout.size(n_assets))).astype(np.float32))
                samples: dict[str, list[float]] = {"mlp": [], "asset_shared": []}
                for _ in range(repeats):
                    for kind in samples:
                        samples[kind].append(time_forward(built[kind], obs, calls))
                for kind, seconds in samples.items():
                    per_call = statistics.median(seconds) * 1e6
                    row.setdefault(kind, {})[f"batch_{batch}"] = {
                        "us_per_call": round(per_call, 1),
                        "us_per_row": round(per_call / batch, 2),
                    }
                    row[kind]["parameters"] = sum(p.numel() for p in built[kind].parameters())
            figures.setdefault(algo, {})[str(n_assets)] = row
            print(f"asset_shared_speed: forward {algo} K={n_assets} done", file=sys.stderr, flush=True)
    return figures


def measure_train(algo: str, kind: str, n_assets: int, seconds: float, base: str | None) -> dict[str, Any]:
    from training.algorithms import build_algorithm_config
    from training.config import check_training, resolve_train_config, with_regime_model

    overrides = {
        "env": {"data": {"synthetic_assets": n_assets}, "regimes": {"n_regimes": N_REGIMES}},
        "model": {"kind": kind},
        "validate_every_steps": 10**12,
    }
    if base is not None:
        overrides["env"]["policy"] = {"base": base}
    config = resolve_train_config(algo, overrides=overrides)
    config = with_regime_model(config, check_training(config))
    learning_starts = int(config.hyperparameters.get("num_steps_sampled_before_learning_starts", 0))
    with tempfile.TemporaryDirectory() as run_dir:
        algorithm = build_algorithm_config(config, run_dir=run_dir).build_algo()
        try:
            steps = 0
            while steps == 0 or steps <= learning_starts:  # warm-up: the first iteration, and SAC's learning start
                steps = int(algorithm.train()["num_env_steps_sampled_lifetime"])
            probe = speed_probe_ms()
            started, first, iterations = time.perf_counter(), steps, 0
            timers: dict[str, list[float]] = {"sampling": [], "learning": []}
            while time.perf_counter() - started < seconds:
                result = algorithm.train()
                steps = int(result["num_env_steps_sampled_lifetime"])
                iterations += 1
                for name, key in (("sampling", "env_runner_sampling_timer"), ("learning", "learner_update_timer")):
                    timers[name].append(float(result.get("timers", {}).get(key, 0.0)))
            elapsed = time.perf_counter() - started
        finally:
            algorithm.stop()
    return {
        "env_steps_per_s": round((steps - first) / elapsed, 1),
        "env_steps": steps - first,
        "seconds": round(elapsed, 1),
        "iterations": iterations,
        # RLlib's timers (smoothed over recent iterations): PPO samples then learns once per iteration; SAC samples
        # and learns in turns within one (the learner figure is per update call)
        "sampling_s": round(statistics.mean(timers["sampling"]), 3),
        "learning_s": round(statistics.mean(timers["learning"]), 3),
        "speed_probe_ms": probe,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["forward", "train", "all"], default="all")
    parser.add_argument("--assets", type=int, nargs="+", default=[4, 20, 50, 200], help="forward: universe sizes")
    parser.add_argument("--train-assets", type=int, nargs="+", default=[4, 20], help="train: universe sizes")
    parser.add_argument("--algos", nargs="+", default=["ppo", "sac"], choices=["ppo", "sac"])
    parser.add_argument("--seconds", type=float, default=40.0, help="train: measured seconds per run")
    parser.add_argument(
        "--base",
        help="train: the residual base instead of the YAML's (none: softmax actions; the YAMLs' regime_growth solves "
        "a growth-optimal programme per env and day at each episode reset, which dominates at 20 assets)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="forward: timing loops per figure (median)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default torch's); 1 keeps tiny ops off a thread pool that stalls for "
        "milliseconds when other processes hold the CPUs",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from core.runtime import setup_console

    setup_console()
    report: dict[str, Any] = {
        "benchmark": "asset_shared_speed",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
    }
    if args.part in ("forward", "all"):
        report["forward"] = measure_forward(args.algos, args.assets, args.repeats)
    if args.part in ("train", "all"):
        from core.runtime import init_ray
        from envs import register_rllib

        init_ray(2, dashboard=False)
        register_rllib()
        train: dict[str, Any] = {}
        for n_assets in args.train_assets:
            for algo in args.algos:
                for kind in ("mlp", "asset_shared"):
                    print(f"asset_shared_speed: train {algo} {kind} K={n_assets}", file=sys.stderr, flush=True)
                    figures = measure_train(algo, kind, n_assets, args.seconds, args.base)
                    train.setdefault(algo, {}).setdefault(str(n_assets), {})[kind] = figures
                    print(f"asset_shared_speed: {json.dumps(figures)}", file=sys.stderr, flush=True)
        report["train"] = train
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

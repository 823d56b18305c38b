"""DQN training throughput with factored actions (branching DQN) at several universe sizes, beside the 4-asset grid
DQN in the same run. Prints JSON.

    python benchmarks/factored_dqn_scale.py [--seconds 15] [--rounds 3] [--assets 4 20 50]
        [--kinds mlp asset_shared] [--grid-assets 4]

Every figure trains ``configs/dqn.yaml`` on the built-in synthetic market with ``data.synthetic_assets: K`` for
``--seconds`` of ``algorithm.train()`` iterations per round (``--rounds`` round-robin passes over the rows, every
algorithm built once; the median round is reported), after a warm-up past the start of learning
(``configs/dqn.yaml``: 2,000 env steps sampled first), without the validation callback (it plays the validation
paths with the module, an env cost alike for every action space, and its first pass alone outlasts a round),
with two changes so that only the action space and the network differ between rows: no residual base
(``policy.base: none``: the regime-growth base takes many minutes to set up at 20+ assets on 2 CPUs) and the regime
filter runs the market's true law (``regimes.law: true``: fitting it by EM takes minutes at 20+ assets; the filter
still runs every step). ``grid``: ``discrete_actions: grid`` (simplex grid, 35 actions at 4 assets, 8,855 at 20);
``factored_<kind>``: ``discrete_actions: factored`` with ``model.kind: <kind>`` (``training.factored_dqn``).
``ratio_to_grid_4`` is env steps/s over the 4-asset grid DQN's; ``ratio_to_own_4`` over the same kind at 4 assets.
``speed_probe_ms`` (a fixed Python loop) is measured before each row and round, as this machine's speed drifts.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_throughput import trained_samples  # noqa: E402

WARMUP_STEPS = 4000  # past num_steps_sampled_before_learning_starts (2,000), so every measured iteration learns


def speed_probe_ms() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i * i
    return round((time.perf_counter() - started) * 1000, 1)


def overrides(n_assets: int, actions: str, kind: str) -> dict[str, Any]:
    return {
        "env": {
            "data": {"synthetic_assets": n_assets},
            "regimes": {"law": "true"},
            "discrete_actions": actions,
            "policy": {"base": "none"},
        },
        "model": {"kind": kind},
    }


def build(n_assets: int, actions: str, kind: str, run_dir: str) -> tuple[Any, int]:
    """The algorithm for one row (no validation callback), warmed up past the start of learning; its Q outputs."""
    from ray.rllib.callbacks.callbacks import RLlibCallback

    from training.algorithms import build_algorithm_config
    from training.config import check_training, resolve_train_config, with_regime_model

    config = resolve_train_config("dqn", None, overrides=overrides(n_assets, actions, kind))
    env = check_training(config)
    config = with_regime_model(config, env)
    algorithm = build_algorithm_config(config, run_dir=run_dir).callbacks(RLlibCallback).build_algo()
    while algorithm.train()["num_env_steps_sampled_lifetime"] < WARMUP_STEPS:
        pass
    space = env.action_space
    return algorithm, int(space.nvec.sum()) if hasattr(space, "nvec") else int(space.n)


def run_for(algorithm: Any, seconds: float) -> tuple[float, float]:
    """``algorithm.train()`` for ``seconds``: env steps sampled and transitions trained per second."""
    result = algorithm.train()
    steps, trained = result["num_env_steps_sampled_lifetime"], trained_samples(result)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        result = algorithm.train()
    elapsed = time.perf_counter() - started
    return (result["num_env_steps_sampled_lifetime"] - steps) / elapsed, (trained_samples(result) - trained) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="training time per row and round")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin passes over the rows (medians reported)")
    parser.add_argument("--assets", type=int, nargs="+", default=[4, 20, 50])
    parser.add_argument("--kinds", nargs="+", default=["mlp", "asset_shared"], choices=["mlp", "asset_shared"])
    parser.add_argument("--grid-assets", type=int, nargs="*", default=[4], help="grid DQN rows (4 is the anchor)")
    args = parser.parse_args(argv)

    from core.runtime import init_ray, setup_console
    from envs import register_rllib

    setup_console()
    init_ray(2, dashboard=False)
    register_rllib()
    plan = [("grid", "mlp", k) for k in sorted(set(args.grid_assets) | {4})]
    plan += [("factored", kind, k) for kind in args.kinds for k in args.assets]
    rows: dict[str, dict[str, Any]] = {}
    algorithms: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as run_dir:
        for actions, kind, n_assets in plan:
            name = f"grid_{n_assets}" if actions == "grid" else f"factored_{kind}_{n_assets}"
            print(f"factored_dqn_scale: building {name} ...", file=sys.stderr, flush=True)
            algorithms[name], outputs = build(n_assets, actions, kind, f"{run_dir}/{name}")
            rows[name] = {"assets": n_assets, "actions": actions, "kind": kind, "q_outputs": outputs, "rounds": []}
        # Round-robin: the machine's speed drifts (other work, thermal), so every row sees every phase of it.
        for round_ in range(args.rounds):
            for name, algorithm in algorithms.items():
                print(f"factored_dqn_scale: round {round_ + 1}, {name} ...", file=sys.stderr, flush=True)
                probe = speed_probe_ms()
                steps, trained = run_for(algorithm, args.seconds)
                rows[name]["rounds"].append(
                    {"env_steps_per_s": round(steps), "trained_samples_per_s": round(trained), "speed_probe_ms": probe}
                )
        for algorithm in algorithms.values():
            algorithm.stop()
    for row in rows.values():
        row["env_steps_per_s"] = round(statistics.median(r["env_steps_per_s"] for r in row["rounds"]))
    anchor = rows["grid_4"]["env_steps_per_s"]
    for row in rows.values():
        row["ratio_to_grid_4"] = round(row["env_steps_per_s"] / anchor, 3)
        own = rows.get(f"factored_{row['kind']}_4") if row["actions"] == "factored" else rows["grid_4"]
        row["ratio_to_own_4"] = round(row["env_steps_per_s"] / own["env_steps_per_s"], 3) if own else None
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]}
    record = {"benchmark": "factored_dqn_scale", "machine": machine, "seconds": args.seconds, "rows": rows}
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Single-env steps per second in each action mode (4 assets, 20-day window, built-in market). Prints JSON.

    python benchmarks/env_throughput.py [--steps 200000]

Actions are drawn up front so the figure measures the env, not the sampler. Episodes cover the whole train
split (about 4,200 days), so resets are rare, as in training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc

import numpy as np

from envs import PortfolioEnv


def measure(action_mode: str, steps: int, seed: int = 0) -> dict:
    env = PortfolioEnv({"action_mode": action_mode, "window_days": 20, "episode_days": None, "random_start": False})
    rng = np.random.default_rng(seed)
    if action_mode == "discrete":
        actions = list(rng.integers(0, env.action_space.n, size=steps))
    else:
        actions = list(rng.uniform(-1.0, 1.0, size=(steps, env.action_space.shape[0])).astype(np.float32))
    env.reset(seed=seed)
    resets = 0
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
            resets += 1
    elapsed = time.perf_counter() - start

    # Memory: bytes still allocated after 10,000 further steps (should be ~0: the step keeps nothing).
    env.reset()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for action in actions[:10_000]:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    retained = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {
        "action_mode": action_mode,
        "steps": steps,
        "seconds": round(elapsed, 3),
        "steps_per_second": round(steps / elapsed),
        "microseconds_per_step": round(1e6 * elapsed / steps, 2),
        "resets": resets,
        "retained_bytes_after_10k_steps": retained,
        "observation_size": int(env.observation_space.shape[0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000)
    args = parser.parse_args(argv)
    results = [measure(mode, args.steps) for mode in ("continuous", "discrete")]
    print(
        json.dumps(
            {
                "benchmark": "env_throughput",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "processor": platform.machine(),
                },
                "assets": 4,
                "window_days": 20,
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

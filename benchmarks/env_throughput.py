"""Env steps per second on one core: a single ``PortfolioEnv`` in each action mode (4 assets, 20-day window, the
built-in market, whole-split episodes), and the batched ``PortfolioVectorEnv`` with 256 sub-environments under the
training configuration (``configs/env.yaml``: a fresh 252-day law path per episode, regime probabilities observed),
resets included. Prints JSON.

    python benchmarks/env_throughput.py [--steps 200000] [--num-envs 256] [--vector-steps 4000]

Actions are drawn up front so the figures measure the env, not the sampler. The process is pinned to one CPU and
BLAS to one thread, so "on one core" holds on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one core means one BLAS thread too
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from envs import PortfolioEnv  # noqa: E402
from envs.vector_env import PortfolioVectorEnv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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


def measure_vector(num_envs: int, vector_steps: int, train_paths: str = "auto", seed: int = 0) -> dict:
    """``num_envs`` portfolios stepped together under configs/env.yaml; the regime model is fitted once, outside
    the timing (training does the same, before the first step)."""
    config = yaml.safe_load((ROOT / "configs" / "env.yaml").read_text())
    config["train_paths"] = train_paths
    build_start = time.perf_counter()
    env = PortfolioVectorEnv(config, num_envs=num_envs)
    build = time.perf_counter() - build_start
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, size=(vector_steps, num_envs, env.single_action_space.shape[0]))
    actions = actions.astype(np.float32)
    env.reset(seed=seed)
    episodes = 0
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        episodes += int(terminated.sum() + truncated.sum())
    elapsed = time.perf_counter() - start
    steps = num_envs * vector_steps
    return {
        "env": "PortfolioVectorEnv",
        "num_envs": num_envs,
        "train_paths": env.env.path_kind,
        "observe_regimes": env.config.observe_regimes,
        "episode_days": env.config.episode_days,
        "env_steps": steps,
        "episodes_ended": episodes,
        "seconds": round(elapsed, 3),
        "steps_per_second": round(steps / elapsed),
        "microseconds_per_vector_step": round(1e6 * elapsed / vector_steps, 1),
        "build_seconds_incl_regime_fit": round(build, 1),
        "observation_size": int(env.single_observation_space.shape[0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000, help="single-env steps per action mode")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--vector-steps", type=int, default=4_000, help="steps of all --num-envs at once")
    args = parser.parse_args(argv)
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cpus:
        os.sched_setaffinity(0, {min(cpus)})
    try:
        results = [measure(mode, args.steps) for mode in ("continuous", "discrete")]
        vector = [measure_vector(args.num_envs, args.vector_steps, paths) for paths in ("auto", "split")]
    finally:
        if cpus:
            os.sched_setaffinity(0, cpus)  # called from a test, the process goes on with all its CPUs
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
                "vector": vector,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

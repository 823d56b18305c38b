"""What universe sampling (``universe.sample_assets``) costs the batched env. Prints JSON.

    python benchmarks/universe_sampling.py [--num-envs 256] [--steps 300] [--repeats 3]

``PortfolioVectorEnv`` over the built-in synthetic market (``configs/env.yaml``: a fresh law path per episode,
regime probabilities observed, filtered with the true law so no EM fit is timed) stepping random actions, each case
``K = 20`` assets per episode: all 20 of a 20-asset market (no sampling), 20 sampled of 20 (the gather alone), and
20 sampled of 50 and of 200 (the whole universe's features computed for every drawn path); then on the train split
(features computed once), 20 of 20 and 20 sampled of 200. Env steps/s within an episode (the step alone) and over
``--steps`` vector steps (252-day episodes: every sub-environment resets once, in one batched pass), the best of
``--repeats`` interleaved runs; ``speed_probe_ms`` (a fixed Python loop) says how fast the machine ran meanwhile.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {  # name: (assets in the market, sample_assets, train_paths)
    "20 of 20, no sampling": (20, None, "law"),
    "20 sampled of 20": (20, 20, "law"),
    "20 sampled of 50": (50, 20, "law"),
    "20 sampled of 200": (200, 20, "law"),
    "20 of 20, no sampling, split": (20, None, "split"),
    "20 sampled of 200, split": (200, 20, "split"),
}


def speed_probe_ms() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i
    return round(1000 * (time.perf_counter() - started), 1)


def build(n_universe: int, sample: int | None, paths: str, num_envs: int):
    from envs.vector_env import PortfolioVectorEnv

    config = yaml.safe_load((ROOT / "configs" / "env.yaml").read_text())
    config["data"]["synthetic_assets"] = n_universe
    config["regimes"]["law"] = "true"
    config["train_paths"] = paths
    config["universe"] = {"sample_assets": sample}
    return PortfolioVectorEnv(config, num_envs=num_envs)


def run(env, steps: int, seed: int) -> dict[str, float]:
    """Env steps/s over ``steps`` vector steps after a reset: within the first episode (no reset: the step alone),
    and over all of them (with the batched reset of every sub-environment at the episode's end, 252 steps)."""
    n_assets = env.single_action_space.shape[0]
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(steps, env.num_envs, n_assets)).astype(np.float32)
    episode = env.config.episode_days
    env.reset(seed=seed)
    started = time.perf_counter()
    for action in actions[: episode - 1]:
        env.step(action)
    within = time.perf_counter() - started
    for action in actions[episode - 1 :]:
        env.step(action)
    total = time.perf_counter() - started
    return {"step_only": env.num_envs * (episode - 1) / within, "with_resets": env.num_envs * steps / total}


def measure(num_envs: int, steps: int, repeats: int) -> dict[str, dict]:
    """Every case, ``repeats`` times, interleaved so that the machine's drift hits them alike; the best of each."""
    envs = {name: build(*case, num_envs) for name, case in CASES.items()}
    best: dict[str, dict[str, float]] = {name: {"step_only": 0.0, "with_resets": 0.0} for name in CASES}
    probes = []
    for repeat in range(repeats):
        probes.append(speed_probe_ms())
        for name, env in envs.items():
            for key, value in run(env, steps, repeat).items():
                best[name][key] = max(best[name][key], value)
    return {
        "speed_probe_ms": probes,
        "cases": {
            name: {
                "env_steps_per_s_step_only": round(best[name]["step_only"]),
                "env_steps_per_s_with_resets": round(best[name]["with_resets"]),
                "observation_size": int(envs[name].single_observation_space.shape[0]),
            }
            for name in CASES
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = measure(args.num_envs, args.steps, args.repeats)
    machine = {"python": platform.python_version(), "processor": platform.processor() or platform.machine()}
    print(json.dumps({"machine": machine, "num_envs": args.num_envs, "steps": args.steps, **results}, indent=1))


if __name__ == "__main__":
    main()

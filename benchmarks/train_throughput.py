"""End-to-end training throughput of DQN, SAC and PPO on the built-in market, beside RLlib's own ceiling. Prints JSON.

    python benchmarks/train_throughput.py [--seconds 60] [--algos ppo,sac,dqn] [--vectorize vector_entry_point]

Each algorithm trains from its project config (``configs/<algo>.yaml`` over ``configs/env.yaml``: regimes observed,
a fresh law path per episode) for ``--seconds`` of iterations in this process, as ``python -m training.train`` does,
with validation after every iteration; ``env_steps_per_s`` is env steps sampled over the wall-clock time of those
iterations (sampling, connectors, learning and validation included; building the algorithm is not). For SAC and DQN
the useful figure is learning, not sampling: ``trained_samples_per_s`` counts the replayed transitions the learner
trained on per second (gradient updates x batch size), and ``replay_ratio`` is their ratio to env steps sampled.

The anchor, measured in the same run, is RLlib's PPO on ``CartPole-v1`` with PPO's settings from ``configs/ppo.yaml``
(envs per runner, vectorize mode, batch sizes, epochs, network), without validation: the framework's own ceiling
for this machine, so ``ratio_to_anchor`` can be compared across machines whose speed drifts.

``--replay rllib`` trains DQN and SAC with RLlib's own (prioritised episode) replay buffer instead of the array
one (``training.replay``), for the replay's before/after ratio in the same run. ``--vectorize sync`` measures the same configs with gymnasium's ``SyncVectorEnv`` (one ``PortfolioEnv`` step per
env, as before the batched ``PortfolioVectorEnv``), for a before/after ratio in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

TRAINED_KEYS = ("num_env_steps_trained_lifetime", "num_module_steps_trained_lifetime")


def trained_samples(result: dict[str, Any]) -> int:
    """Transitions the learner trained on so far (RLlib's learner counter)."""
    learners = result.get("learners", {}).get("__all_modules__", {})
    for key in TRAINED_KEYS:
        if key in learners:
            return int(learners[key])
    return int(result.get("num_env_steps_trained_lifetime", 0))


def run_for(algorithm, seconds: float) -> dict[str, Any]:
    """Call ``algorithm.train()`` until ``seconds`` have passed; the counts and timings of those iterations."""
    started = time.perf_counter()
    iterations, validation_s, result = 0, 0.0, {}
    while time.perf_counter() - started < seconds:
        result = algorithm.train()
        iterations += 1
        validation_s += float((result.get("validation") or {}).get("seconds", 0.0))
    elapsed = time.perf_counter() - started
    steps = int(result.get("num_env_steps_sampled_lifetime", 0))
    trained = trained_samples(result)
    return {
        "iterations": iterations,
        "seconds": round(elapsed, 1),
        "env_steps": steps,
        "env_steps_per_s": round(steps / elapsed),
        "trained_samples": trained,
        "trained_samples_per_s": round(trained / elapsed),
        "replay_ratio": round(trained / steps, 2) if steps else None,
        "validation_share": round(validation_s / elapsed, 3),
    }


def measure_algo(algo: str, seconds: float, vectorize: str, replay: str | None = None) -> dict[str, Any]:
    from training.algorithms import build_algorithm_config
    from training.config import check_training, resolve_train_config, with_regime_model

    config = resolve_train_config(algo, None, overrides={"replay": replay} if replay and algo != "ppo" else {})
    env = check_training(config)
    config = with_regime_model(config, env)
    with tempfile.TemporaryDirectory() as run_dir:
        algo_config = build_algorithm_config(config, run_dir=run_dir)
        algo_config = algo_config.env_runners(gym_env_vectorize_mode=vectorize)
        algorithm = algo_config.build_algo()
        try:
            figures = run_for(algorithm, seconds)
        finally:
            algorithm.stop()
    res = config.resources
    return figures | {
        "replay": config.replay if algo != "ppo" else None,
        "num_envs_per_env_runner": res.num_envs_per_env_runner,
        "num_env_runners": res.num_env_runners,
        "hyperparameters": {k: v for k, v in config.hyperparameters.items() if k != "replay_buffer_config"},
    }


def measure_anchor(seconds: float, vectorize: str) -> dict[str, Any]:
    """RLlib PPO on CartPole-v1 with configs/ppo.yaml's sampling and learning settings, no validation."""
    from ray.rllib.algorithms.ppo import PPOConfig

    from training.config import resolve_train_config

    ppo = resolve_train_config("ppo", None, overrides={})
    hyper = ppo.hyperparameters
    res = ppo.resources
    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .framework("torch")
        .env_runners(
            num_env_runners=res.num_env_runners,
            num_envs_per_env_runner=res.num_envs_per_env_runner,
            rollout_fragment_length=res.rollout_fragment_length,
            gym_env_vectorize_mode=vectorize,
        )
        .rl_module(model_config={"fcnet_hiddens": list(ppo.model.hidden), "fcnet_activation": ppo.model.activation})
        .training(
            train_batch_size_per_learner=hyper["train_batch_size_per_learner"],
            minibatch_size=hyper["minibatch_size"],
            num_epochs=hyper["num_epochs"],
        )
        .debugging(seed=0, log_level="ERROR")
    )
    algorithm = config.build_algo()
    try:
        return run_for(algorithm, seconds)
    finally:
        algorithm.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per algorithm")
    parser.add_argument("--anchor-seconds", type=float, default=30.0)
    parser.add_argument("--algos", default="ppo,sac,dqn")
    parser.add_argument("--vectorize", default="vector_entry_point", choices=["vector_entry_point", "sync"])
    parser.add_argument(
        "--replay",
        choices=["array", "rllib"],
        help="DQN and SAC: override the YAMLs' replay (rllib: RLlib's prioritised episode buffer, as before the array one)",
    )
    args = parser.parse_args(argv)

    from core.runtime import init_ray, setup_console
    from envs import register_rllib

    setup_console()
    init_ray(None, dashboard=False)
    register_rllib()
    algorithms = {}
    for algo in [a.strip() for a in args.algos.split(",") if a.strip()]:
        print(f"train_throughput: {algo} for {args.seconds:.0f} s ...", file=sys.stderr, flush=True)
        algorithms[algo] = measure_algo(algo, args.seconds, args.vectorize, args.replay)
    print(f"train_throughput: anchor (PPO on CartPole-v1) for {args.anchor_seconds:.0f} s ...", file=sys.stderr)
    anchor = measure_anchor(args.anchor_seconds, args.vectorize)
    for figures in algorithms.values():
        figures["ratio_to_anchor"] = round(figures["env_steps_per_s"] / anchor["env_steps_per_s"], 3)
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "vectorize": args.vectorize,
                "seconds_per_algorithm": args.seconds,
                "algorithms": algorithms,
                "anchor": {
                    "rllib_ppo_cartpole_env_steps_per_s": anchor["env_steps_per_s"],
                    "rllib_ppo_cartpole": anchor,
                },
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

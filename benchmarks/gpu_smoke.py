"""GPU smoke test: a GPU node trains PPO, SAC and DQN briefly with the GPU profile's resources and shows where the
learners run. Prints JSON. Meant for a node of the cluster (``cluster.yaml``'s g5.2xlarge) or any CUDA machine; the
default budget keeps it under 5 minutes.

    python benchmarks/gpu_smoke.py [--seconds 45] [--algos ppo,sac,dqn]
    python benchmarks/gpu_smoke.py --allow-cpu --seconds 5 --algos ppo   # the script itself, on a machine without one

Per algorithm: the project's config (``configs/<algo>.yaml``) with ``configs/sweep_gpu.yaml``'s ``resources`` (one
remote learner on 1 GPU, remote env runners), trained for ``--seconds`` of iterations. It reports
``learner_devices`` (the torch device of every learner's module parameters, asked of the learners themselves),
``env_steps_per_s`` (sampled, end to end) and ``learner_updates_per_s`` (the learner's trained samples per second
divided by its batch: PPO's minibatch, SAC's and DQN's train batch). Without a GPU it refuses (exit 2) unless
``--allow-cpu``, which runs the same measurement with the learner on the CPU and one env runner, to fit 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import run_for  # noqa: E402  (the same iteration loop and counters)

ROOT = Path(__file__).resolve().parent.parent


def gpu_resources(allow_cpu: bool) -> dict[str, Any]:
    from core.config import load_yaml

    resources = dict(load_yaml(ROOT / "configs" / "sweep_gpu.yaml")["resources"])
    if allow_cpu:  # fit a 2-CPU machine: the learner in the trial's process, one env runner
        resources.update(num_gpus_per_learner=0, num_learners=0, num_env_runners=1)
    return resources


def learner_devices(algorithm) -> list[str]:
    results = algorithm.learner_group.foreach_learner(
        lambda learner: str(next(learner.module["default_policy"].parameters()).device)
    )
    return [r.get() if hasattr(r, "get") else r for r in results]  # remote learners answer CallResults


def measure(algo: str, seconds: float, allow_cpu: bool) -> dict[str, Any]:
    from training.algorithms import build_algorithm_config
    from training.config import check_training, resolve_train_config, with_regime_model

    config = resolve_train_config(algo, None, overrides={"resources": gpu_resources(allow_cpu)})
    config = with_regime_model(config, check_training(config))
    hyper = config.hyperparameters
    batch = hyper.get("minibatch_size") if algo == "ppo" else hyper.get("train_batch_size_per_learner", 256)
    with tempfile.TemporaryDirectory() as run_dir:
        algorithm = build_algorithm_config(config, run_dir=run_dir).build_algo()
        try:
            devices = learner_devices(algorithm)
            figures = run_for(algorithm, seconds)
        finally:
            algorithm.stop()
    return {
        "learner_devices": devices,
        "env_steps_per_s": figures["env_steps_per_s"],
        "learner_updates_per_s": round(figures["trained_samples_per_s"] / batch, 1) if batch else None,
        "batch": batch,
        **{k: figures[k] for k in ("iterations", "seconds", "env_steps", "trained_samples")},
        "resources": config.resources.model_dump(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="training time per algorithm")
    parser.add_argument("--algos", default="ppo,sac,dqn")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (tests the script, not the GPU)")
    args = parser.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print(
            "error: no CUDA device here (torch.cuda.is_available() is False); run this on a GPU node, "
            "or pass --allow-cpu to check the script itself",
            file=sys.stderr,
        )
        return 2
    import ray

    from core.runtime import init_ray

    # Its own local instance (address='local'), or the cluster RAY_ADDRESS names: never a stale `ray start` left here.
    init_ray(dashboard=False)
    from envs import register_rllib

    register_rllib()
    started = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "gpu_smoke",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        },
        "allow_cpu": args.allow_cpu,
        "algorithms": {},
    }
    try:
        for algo in [a.strip() for a in args.algos.split(",") if a.strip()]:
            out["algorithms"][algo] = measure(algo, args.seconds, args.allow_cpu)
            print(
                f"{algo}: {json.dumps(out['algorithms'][algo]['learner_devices'])} "
                f"{out['algorithms'][algo]['env_steps_per_s']:,} env steps/s",
                file=sys.stderr,
            )
    finally:
        ray.shutdown()
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Learning sanity check of branching DQN: a residual factored DQN against the base it tilts. Prints JSON.

    python benchmarks/factored_dqn_learning.py [--timesteps 100000] [--kind mlp] [--seed 0] [--actions factored]

Trains ``configs/dqn.yaml`` (residual on ``regime_growth``, trade_rate 0.25, the built-in 4-asset market) with
``discrete_actions: factored`` (``--actions grid``: the shipped ``2K + 1`` tilts, for comparison) and
``model.kind: --kind`` through ``training.train`` (validation, selection and
export as in a real run; no promotion gate), then scores on the same validation paths (``training.validation``):

- ``agent``: the exported policy;
- ``middle_levels``: the zero tilt (the middle level on every asset; grid action 0), i.e. the base reached at the
  config's ``trade_rate`` (what the agent gets by never tilting);
- ``base``: the base itself, traded to in full every day (``trade_rate: 1``).

Each with its mean daily log growth and standard error; ``agent_minus_*`` are the differences in basis points a day.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class MiddleLevels:
    """The zero tilt (every asset at its middle level, or grid action 0): the base, reached at ``trade_rate``."""

    def __init__(self, action_map: Any) -> None:
        self.action_map = action_map

    def weights_batch(self, observations: np.ndarray) -> np.ndarray:
        from envs.bases import observed_base

        n_assets = self.action_map.n_assets
        held = np.asarray(observations[:, -n_assets:], dtype=np.float64)
        if self.action_map.levels is None:
            middle = np.zeros(len(observations), dtype=np.int64)
        else:
            middle = np.full((len(observations), n_assets), (self.action_map.levels - 1) // 2)
        return self.action_map.batch(middle, held, observed_base(observations, n_assets))


def score(policy: Any, env_config: Any) -> dict[str, float]:
    from training.validation import validate_all, validation_envs

    metrics = validate_all(policy, validation_envs(env_config))
    return {key: metrics[key] for key in ("mean_daily_log_growth", "mean_daily_log_growth_se", "annual_turnover")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--kind", default="mlp", choices=["mlp", "asset_shared"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--actions", default="factored", choices=["factored", "grid"])
    args = parser.parse_args(argv)

    from envs.actions import ActionMap
    from policies.load import load_policy
    from training.config import resolve_train_config
    from training.train import train

    overrides = {
        "env": {"discrete_actions": args.actions},
        "model": {"kind": args.kind},
        "timesteps": args.timesteps,
        "seed": args.seed,
    }
    config = resolve_train_config("dqn", overrides=overrides)
    with tempfile.TemporaryDirectory() as root:
        summary = train(
            config, agent="branching", runs_dir=Path(root) / "runs", models_dir=Path(root) / "models", gate=False
        )
        policy, meta = load_policy(Path(root) / "models" / "branching")
    env_config = meta.env_config  # carries the fitted regime model the run used
    full = env_config.model_copy(update={"trade_rate": 1.0})
    rows = {
        "agent": score(policy, env_config),
        "middle_levels": score(MiddleLevels(ActionMap.from_config(env_config, len(meta.assets))), env_config),
        "base": score(MiddleLevels(ActionMap.from_config(full, len(meta.assets))), full),
    }
    agent = rows["agent"]["mean_daily_log_growth"]
    result = {
        "benchmark": "factored_dqn_learning",
        "actions": args.actions,
        "kind": args.kind,
        "base": env_config.policy.base,
        "env_steps": summary["env_steps"],
        "seconds": summary["seconds"],
        "validation_paths": env_config.validation_paths,
        "rows": rows,
        "agent_minus_middle_levels_bp_per_day": round(
            1e4 * (agent - rows["middle_levels"]["mean_daily_log_growth"]), 3
        ),
        "agent_minus_base_bp_per_day": round(1e4 * (agent - rows["base"]["mean_daily_log_growth"]), 3),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

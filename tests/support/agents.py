"""Exported agents for tests: freshly initialised RLlib modules written in the exported-model format."""

from __future__ import annotations

from pathlib import Path


def build_module(env, algo: str):
    """A freshly initialised RLlib module for ``env`` (what training would produce, before learning)."""
    from training.algorithms import algorithm_config_class

    config = algorithm_config_class(algo)().rl_module(model_config={"fcnet_hiddens": [16]})
    return config.get_rl_module_spec(env=env, inference_only=True).build()


def export_agent(env, module_dir, models_dir, agent="ppo", mean_daily_log_growth=0.0004, algo="ppo"):
    """Export the module saved at ``module_dir`` for ``env`` as ``models_dir/agent``; the agent folder (a ``Path`` for
    a local ``models_dir``, else its ``Location``)."""
    from envs.regimes import carry_regime_model
    from policies.export import export_policy

    exported = export_policy(
        module_dir,
        models_dir,
        agent=agent,
        algorithm=algo,
        env_config=carry_regime_model(env.config, env.regime_model),  # as training carries it
        market=env.market,
        splits=env.splits,
        validation={"mean_daily_log_growth": mean_daily_log_growth, "sharpe": 1.0},
        source_checkpoint="runs/x/checkpoint",
        seed=3,
        resolved_config={"algo": algo},
    )
    return exported.local_path if exported.is_local else exported


def export_untrained(env, algo: str, folder: Path, models_dir: Path, agent: str | None = None) -> Path:
    """Build, save and export an untrained ``algo`` module for ``env``; the agent folder."""
    agent = agent or algo
    build_module(env, algo).save_to_path(str(folder / f"{agent}-module"))
    return export_agent(env, folder / f"{agent}-module", models_dir, agent=agent, algo=algo)

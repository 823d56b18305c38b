"""Exported asset-shared agents for tests: a freshly initialised ``policies.shared_ppo.AssetSharedPPOModule`` (what
``model.kind: asset_shared`` trains) written in the exported-model format, as training would export it."""

from __future__ import annotations

from pathlib import Path


def build_shared_module(env, hidden: tuple[int, ...] = (16, 16), seed: int = 0):
    """An inference-only asset-shared PPO module for ``env``'s layout, its weights drawn wide enough that its
    outputs differ from asset to asset."""
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from envs.layout import AssetLayout
    from policies.asset_heads import SharedModelConfig
    from policies.shared_ppo import AssetSharedPPOModule

    torch.manual_seed(seed)
    n_regimes = env.regime_model.n_regimes if env.config.observe_regimes else 0
    model_config = SharedModelConfig(AssetLayout.of_env(env.config, n_regimes), hidden=hidden).to_model_config()
    module = RLModuleSpec(
        module_class=AssetSharedPPOModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config=model_config,
        inference_only=True,
    ).build()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.5)
    return module.eval()


def export_shared(env, folder: Path, models_dir: Path, agent: str = "shared") -> Path:
    """Build, save and export an asset-shared module for ``env`` (trained on its assets); the agent folder."""
    from envs.regimes import carry_regime_model
    from policies.export import export_policy

    module_dir = folder / f"{agent}-module"
    build_shared_module(env).save_to_path(str(module_dir))
    exported = export_policy(
        module_dir,
        models_dir,
        agent=agent,
        algorithm="ppo",
        env_config=carry_regime_model(env.config, env.regime_model),
        market=env.market,
        splits=env.splits,
        validation={"mean_daily_log_growth": 0.0003, "sharpe": 0.8},
        source_checkpoint="runs/x/checkpoint",
        seed=5,
        resolved_config={"algo": "ppo", "model": {"kind": "asset_shared"}},  # a TrainConfig's dump names the kind
    )
    return exported.local_path

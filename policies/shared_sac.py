"""SAC's asset-shared RLModule (``model.kind: asset_shared``): RLlib's SAC module with its networks swapped.

RLlib's ``DefaultSACTorchRLModule`` keeps its forward passes, its twin-Q minimum, its target networks
(``make_target_networks`` deep-copies ``qf_encoder``/``qf`` and their twins) and the names its learner reads
(``pi_encoder``, ``pi``, ``qf_encoder``, ``qf``, ``qf_twin_encoder``, ``qf_twin``: the optimizers' parameter groups;
``QF_PREDS``, ``q_curr``, ``q_target_next``, ... from ``_forward_train``). Only the networks differ:

- actor: ``AssetSharedEncoder`` -> ``PerAssetGaussian``, as PPO's (``policies.shared_ppo``), into RLlib's
  tanh-squashed Gaussian;
- each critic: ``AssetSharedEncoder`` with the asset's action appended to its features (``per_asset_inputs=1``),
  mean over assets, MLP -> ``Q(s, a)``. Reordering assets and their actions together leaves ``Q`` unchanged.

The deterministic (inference) action is ``tanh(loc)`` (``policies.modules.SquashedGaussian``), the mode of the
squashed Gaussian SAC trained; RLlib's own ``TorchSquashedGaussian.to_deterministic`` returns ``loc`` unsquashed.
Continuous (``Box``) actions only. Runs on observations of any number of assets, like PPO's.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.sac.torch.default_sac_torch_rl_module import DefaultSACTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchSquashedGaussian
from ray.rllib.core.models.base import ENCODER_OUT
from torch import nn

from policies.asset_encoder import AssetSharedEncoder
from policies.asset_heads import PerAssetGaussian, SharedModelConfig, check_spaces, pooled_head
from policies.modules import SquashedGaussian


class ActorEncoder(nn.Module):
    """SAC's ``pi_encoder``: ``{"obs": (B, size)}`` -> ``{ENCODER_OUT: (B, K, H)}`` per-asset embeddings."""

    def __init__(self, shared: SharedModelConfig) -> None:
        super().__init__()
        self.encoder = AssetSharedEncoder(shared.layout, shared.hidden, shared.activation)
        self.out_features = self.encoder.out_features

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        per_asset, _ = self.encoder(batch[Columns.OBS])
        return {ENCODER_OUT: per_asset}


class CriticEncoder(nn.Module):
    """SAC's ``qf_encoder``: ``{"obs": (B, size), "actions": (B, K)}`` -> ``{ENCODER_OUT: (B, H)}``, each asset's
    action beside its own features, pooled over assets."""

    def __init__(self, shared: SharedModelConfig) -> None:
        super().__init__()
        self.encoder = AssetSharedEncoder(shared.layout, shared.hidden, shared.activation, per_asset_inputs=1)
        self.out_features = self.encoder.out_features

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        _, pooled = self.encoder(batch[Columns.OBS], batch[Columns.ACTIONS])
        return {ENCODER_OUT: pooled}


class AssetSharedSACModule(DefaultSACTorchRLModule):
    """``forward_inference({"obs": (B, size)})`` -> ``{"action_dist_inputs": (B, 2K)}``; ``compute_q_values`` and
    ``forward_target`` -> ``(B,)``, RLlib's twin-Q minimum."""

    def setup(self) -> None:
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"an asset-shared SAC module needs continuous (Box) actions, got {self.action_space}")
        shared = SharedModelConfig.from_model_config(self.model_config)
        check_spaces(shared.layout, self.observation_space, self.action_space)
        self.twin_q = bool(self.model_config.get("twin_q", True))
        self.pi_encoder = ActorEncoder(shared)
        self.pi = PerAssetGaussian(self.pi_encoder.out_features)
        if not self.inference_only:
            self.qf_encoder = CriticEncoder(shared)
            self.qf = pooled_head(self.qf_encoder.out_features, shared.activation)
            if self.twin_q:
                self.qf_twin_encoder = CriticEncoder(shared)
                self.qf_twin = pooled_head(self.qf_twin_encoder.out_features, shared.activation)

    def get_train_action_dist_cls(self) -> type[TorchSquashedGaussian]:
        return TorchSquashedGaussian

    def get_exploration_action_dist_cls(self) -> type[TorchSquashedGaussian]:
        return TorchSquashedGaussian

    def get_inference_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

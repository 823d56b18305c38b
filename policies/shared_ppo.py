"""PPO's asset-shared RLModule (``model.kind: asset_shared``): one network per asset role, not per asset slot.

Policy: ``AssetSharedEncoder`` -> ``PerAssetGaussian``: each asset's action (a softmax logit, or a tilt of the
residual base) is drawn from a Gaussian whose mean and log-std the shared network reads off that asset's own
features and the market-wide ones; the inputs are ``(B, 2K)`` ``[means..., log_stds...]``. Value: a separate
encoder whose mean over assets goes through an MLP to one number. Reordering the assets reorders the action means
and leaves the value unchanged, and the module built for the training universe's ``K`` runs on observations of any
other ``K`` (``envs.layout``): its ``observation_space`` and ``action_space`` describe the training universe only.

``model_config`` holds ``policies.asset_heads.SharedModelConfig.to_model_config()`` (the layout as JSON), so the
module restores from a checkpoint (``RLModule.from_checkpoint``) with nothing else. With ``squash`` the actions are
``policies.modules.SquashedGaussian`` (tanh-squashed), else RLlib's ``TorchDiagGaussian`` (clipped by the env's
action map).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchDiagGaussian
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from policies.asset_encoder import AssetSharedEncoder
from policies.asset_heads import PerAssetGaussian, SharedModelConfig, check_spaces, pooled_head
from policies.modules import SquashedGaussian


class AssetSharedPPOModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """``forward_*({"obs": (B, size)})`` -> ``{"action_dist_inputs": (B, 2K)}``; ``compute_values`` -> ``(B,)``.

    Env runners build it ``inference_only`` (no value networks); the learner's copy has both."""

    def setup(self) -> None:
        shared = SharedModelConfig.from_model_config(self.model_config)
        check_spaces(shared.layout, self.observation_space, self.action_space)
        self.pi_encoder = AssetSharedEncoder(shared.layout, shared.hidden, shared.activation)
        self.pi = PerAssetGaussian(self.pi_encoder.out_features)
        if not self.inference_only:
            self.vf_encoder = AssetSharedEncoder(shared.layout, shared.hidden, shared.activation)
            self.vf = pooled_head(self.vf_encoder.out_features, shared.activation)
        self.action_dist_cls = SquashedGaussian if shared.squash else TorchDiagGaussian

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        per_asset, _ = self.pi_encoder(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: self.pi(per_asset)}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """``(B,)`` values. ``embeddings``: the value encoder's pooled ``(B, H)`` output, when already computed (the
        policy has its own encoder, so ``_forward_train`` gives none)."""
        if embeddings is None:
            _, embeddings = self.vf_encoder(batch[Columns.OBS])
        return self.vf(embeddings).squeeze(-1)

    def get_non_inference_attributes(self) -> list[str]:
        return ["vf_encoder", "vf"]

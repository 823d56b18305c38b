"""What the asset-shared PPO and SAC modules (``policies.shared_ppo``, ``policies.shared_sac``) put on top of
``policies.asset_encoder``, and the ``model_config`` they are built from.

- ``PerAssetGaussian``: one linear layer applied to every asset's embedding gives that asset's Gaussian mean and
  log-std, so ``(B, K, H)`` embeddings become ``(B, 2K)`` distribution inputs ``[means..., log_stds...]`` (RLlib's
  ``from_logits`` splits the last axis in halves) for any ``K``.
- ``pooled_head``: an MLP from the ``(B, H)`` mean over assets to one number (PPO's value, SAC's Q).

Both are permutation-equivariant (the Gaussian) or -invariant (the pooled head) because the encoder is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from envs.layout import AssetLayout
from policies.asset_encoder import ACTIVATIONS

KIND = "asset_shared"


@dataclass(frozen=True)
class SharedModelConfig:
    """The asset-shared modules' part of an RLModule ``model_config`` (a plain dict, so checkpoints restore it).

    :param layout: the observation's layout (``envs.layout.AssetLayout``).
    :param hidden: widths of the encoder's equivariant layers; the pooled head has one hidden layer of the last width.
    :param activation: ``relu``, ``tanh`` or ``silu``.
    :param squash: PPO only: tanh-squashed Gaussian actions (``policies.modules.SquashedGaussian``).
    """

    layout: AssetLayout
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    squash: bool = False

    def to_model_config(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "layout": self.layout.to_json(),
            "hidden": list(self.hidden),
            "activation": self.activation,
            "squash": self.squash,
        }

    @classmethod
    def from_model_config(cls, model_config: Mapping[str, Any] | None) -> SharedModelConfig:
        """Read back what ``to_model_config`` wrote (RLlib merges its own keys, such as ``twin_q``, beside them).

        :raises ValueError: no ``layout``, or an unknown activation."""
        model_config = dict(model_config or {})
        if "layout" not in model_config:
            raise ValueError(
                "model_config: an asset-shared module needs 'layout' (envs.layout.AssetLayout.to_json()), got keys "
                f"{sorted(model_config)}"
            )
        activation = model_config.get("activation", "tanh")
        if activation not in ACTIVATIONS:
            raise ValueError(f"model_config.activation: expected one of {sorted(ACTIVATIONS)}, got '{activation}'")
        return cls(
            layout=AssetLayout.from_json(model_config["layout"]),
            hidden=tuple(int(width) for width in model_config.get("hidden", (64, 64))),
            activation=activation,
            squash=bool(model_config.get("squash", False)),
        )


def check_spaces(layout: AssetLayout, observation_space: Any, action_space: Any) -> None:
    """The training universe's spaces fit ``layout``: ``K`` actions and ``layout.size(K)`` observed numbers.

    :raises ValueError: they do not (e.g. a layout counting other regimes or extras than the env observes)."""
    n_assets = int(action_space.shape[-1])
    observed = int(observation_space.shape[-1])
    if observed != layout.size(n_assets):
        raise ValueError(
            f"observation_space: {observed} numbers, but the layout over {n_assets} assets has {layout.size(n_assets)} "
            f"({layout.per_asset} per asset + {layout.n_global} market-wide; layout {layout.to_json()})"
        )


class PerAssetGaussian(nn.Module):
    """``(B, K, H)`` per-asset embeddings -> ``(B, 2K)`` Gaussian inputs: ``K`` means, then ``K`` log-stds.

    Starts near mean 0 and log-std 0 (small initial weights), i.e. near the zero action: equal weight under the
    softmax map, the base itself under a residual one."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 2)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, per_asset: torch.Tensor) -> torch.Tensor:
        out = self.linear(per_asset)  # (B, K, 2)
        return torch.cat([out[..., 0], out[..., 1]], dim=-1)


def pooled_head(width: int, activation: str) -> nn.Sequential:
    """``(B, H)`` pooled embedding -> ``(B, 1)``: one hidden layer of ``width``, then a linear output."""
    return nn.Sequential(nn.Linear(width, width), ACTIVATIONS[activation](), nn.Linear(width, 1))

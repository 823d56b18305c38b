"""One network shared by every asset: the body of the asset-shared policies (``model.kind: asset_shared``).

Each asset's own features (``envs.layout``: its returns, volatility, base weight and weight held), with the
market-wide ones (regime probabilities, extras) appended, go through the same layers; after each layer every asset
also sees the mean over assets (Deep Sets' permutation-equivariant layer, Zaheer et al. 2017; EIIE's shared
per-asset network, Jiang et al. 2017, without its fixed universe). So the network's size does not depend on the
number of assets, reordering the assets reorders its outputs the same way, and a module trained on one universe
runs on another of any size.

Weights (held, and the base's) enter as ``K * w``: equal weight reads 1 whatever ``K`` is, so what is learnt about
"over-" and "under-weight" carries from 20 assets to 200.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from envs.layout import AssetLayout

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


class AssetSharedEncoder(nn.Module):
    """``(B, size)`` observations -> ``(B, K, H)`` per-asset embeddings and their ``(B, H)`` mean over assets.

    :param layout: the observation's layout.
    :param hidden: widths of the equivariant layers (``H`` is the last).
    :param per_asset_inputs: more per-asset numbers given to ``forward`` (SAC's critic: the action), appended to
        each asset's features.
    """

    def __init__(
        self, layout: AssetLayout, hidden: Sequence[int], activation: str = "tanh", per_asset_inputs: int = 0
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("an asset-shared encoder needs at least one hidden layer")
        self.layout = layout
        self.per_asset_inputs = per_asset_inputs
        width = layout.per_asset + per_asset_inputs + layout.n_global
        self.own = nn.ModuleList()
        self.pooled = nn.ModuleList()
        for size in hidden:
            self.own.append(nn.Linear(width, size))
            self.pooled.append(nn.Linear(width, size, bias=False))
            width = size
        self.activation = ACTIVATIONS[activation]()
        self.out_features = width

    def rows(self, obs: torch.Tensor, per_asset: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, K, F')``: each asset's inputs, weights scaled by ``K``, market-wide values appended."""
        rows, market = self.layout.split(obs)
        n_assets = rows.shape[-2]
        scale = torch.ones(rows.shape[-1], dtype=rows.dtype, device=rows.device)
        scale[-1 - int(self.layout.base) :] = float(n_assets)  # weight held (and base weight): K * w
        rows = rows * scale
        parts = [rows]
        if per_asset is not None:
            parts.append(per_asset.reshape(*rows.shape[:-1], self.per_asset_inputs))
        if self.layout.n_global:
            parts.append(market.unsqueeze(-2).expand(*rows.shape[:-1], market.shape[-1]))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else rows

    def forward(self, obs: torch.Tensor, per_asset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.rows(obs, per_asset)
        for own, pooled in zip(self.own, self.pooled, strict=True):
            h = self.activation(own(h) + pooled(h.mean(dim=-2, keepdim=True)))
        return h, h.mean(dim=-2)

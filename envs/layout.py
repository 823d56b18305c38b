"""The observation's per-asset structure (``envs.features``), for policies that share one network across assets.

An observation over ``K`` assets is ``K`` rows of per-asset features plus one row of market-wide ones:

| per asset ``k`` (``F = W + 2 + b`` numbers)                          | market-wide (``G = E + R`` numbers)  |
|----------------------------------------------------------------------|--------------------------------------|
| its last ``W`` log returns (newest first), its volatility,           | the ``E`` extra columns, the ``R``   |
| the residual base's weight on it (``b = 1`` with a base), its weight held | filtered regime probabilities     |

The layout depends on the feature settings only, never on ``K``: ``K = (size - G) / F``. That is what lets an
asset-shared policy trained on one universe allocate another of any size (``AssetLayout.n_assets``), and what an
exported model records (``policies.format.ObservationSpec``) so the server can check features instead of names.
Works on numpy arrays and torch tensors alike (indexing and reshapes only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AssetLayout:
    """:param window_days: ``W``; :param n_extras: ``E``; :param n_regimes: ``R``; :param base: a residual base's
    weights are observed."""

    window_days: int
    n_extras: int = 0
    n_regimes: int = 0
    base: bool = False

    @property
    def per_asset(self) -> int:
        """``F``: numbers per asset."""
        return self.window_days + 2 + int(self.base)

    @property
    def n_global(self) -> int:
        """``G``: market-wide numbers."""
        return self.n_extras + self.n_regimes

    def size(self, n_assets: int) -> int:
        """The observation's length over ``n_assets`` assets (``envs.features.observation_size``)."""
        return n_assets * self.per_asset + self.n_global

    def n_assets(self, size: int) -> int:
        """``K`` for an observation of ``size`` numbers.

        :raises ValueError: no whole number of assets gives that size."""
        assets, rest = divmod(size - self.n_global, self.per_asset)
        if rest or assets < 1:
            raise ValueError(
                f"an observation of {size} numbers does not fit this layout ({self.per_asset} per asset + "
                f"{self.n_global} market-wide)"
            )
        return assets

    def split(self, obs: Any) -> tuple[Any, Any]:
        """``(..., size)`` observations -> ``(..., K, F)`` per-asset rows and ``(..., G)`` market-wide values.

        Per-asset row ``k``: returns ``t, t-1, .., t-W+1``, volatility, [base weight], weight held."""
        size = obs.shape[-1]
        k, w = self.n_assets(size), self.window_days
        lead = tuple(obs.shape[:-1])
        parts = []
        if w:
            returns = obs[..., : w * k].reshape(*lead, w, k)  # lag-major, assets inner
            parts.append(returns.swapaxes(-1, -2) if hasattr(returns, "swapaxes") else returns.transpose(-1, -2))
        start = w * k
        parts.append(obs[..., start : start + k, None])  # volatility
        start += k
        market = obs[..., start : start + self.n_global]
        start += self.n_global
        if self.base:
            parts.append(obs[..., start : start + k, None])
            start += k
        parts.append(obs[..., start : start + k, None])  # weights held
        return _concat(parts), market

    def to_json(self) -> dict[str, Any]:
        return {
            "window_days": self.window_days,
            "n_extras": self.n_extras,
            "n_regimes": self.n_regimes,
            "base": self.base,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> AssetLayout:
        return cls(
            window_days=int(record["window_days"]),
            n_extras=int(record.get("n_extras", 0)),
            n_regimes=int(record.get("n_regimes", 0)),
            base=bool(record.get("base", False)),
        )

    @classmethod
    def of_env(cls, config: Any, n_regimes: int) -> AssetLayout:
        """The layout of an ``envs.config.EnvConfig``'s observations, given its regime model's ``n_regimes``."""
        return cls(
            window_days=config.window_days,
            n_extras=len(config.data.extra_columns) if config.observe_extras else 0,
            n_regimes=n_regimes if config.observe_regimes else 0,
            base=config.policy.base != "none",
        )


def _concat(parts: list[Any]) -> Any:
    first = parts[0]
    if type(first).__module__.startswith("torch"):
        import torch

        return torch.cat(parts, dim=-1)
    import numpy as np

    return np.concatenate(parts, axis=-1)

"""Universe sampling (``universe.sample_assets: K``): each training episode trades a random ``K`` of the data's ``N``
assets, so one asset-shared policy (``model.kind: asset_shared``) learns from every asset's history.

The features of the whole universe are computed once (per split, or per drawn path) by ``envs.features``, as
without sampling; an episode then reads its ``K`` assets' columns through precomputed index arrays. Per-asset parts
(returns, volatility, the base's weight) are gathered by ``envs.layout.AssetLayout``'s rows; market-wide parts (the
extras, the regime probabilities filtered from all ``N`` assets) are kept whole. So the gathered observation is, entry
for entry, the one ``envs.features`` computes on the sampled assets' closes (the regime probabilities excepted: they
stay the universe's). A residual base is observed renormalised over the sampled assets, which is the base over them
only for a base that weighs each asset alone (``envs.config.SUBSET_BASES``: ``equal_weight``).

The draw is ``rng.choice(N, K, replace=False)``: uniform without replacement, in random order, from the env's
generator (``PortfolioEnv.reset``'s ``np_random``; ``PortfolioVectorEnv``'s sub-environment generators draw the same).
"""

from __future__ import annotations

import numpy as np

from core.errors import ConfigError
from envs.layout import AssetLayout


class AssetSampler:
    """Draws an episode's assets and gathers their columns from arrays over the whole universe.

    :param layout: the observation's layout (``AssetLayout.of_env``).
    :param n_universe: ``N``, the data's assets; :param n_sampled: ``K``, the assets an episode trades.
    :param where: the data, for the error when ``K > N``.
    :raises ConfigError: more assets asked for than the data has (naming ``universe.sample_assets``).
    """

    def __init__(self, layout: AssetLayout, n_universe: int, n_sampled: int, where: str = "the data") -> None:
        if n_sampled > n_universe:
            raise ConfigError(f"universe.sample_assets: {n_sampled} is more than the {n_universe} assets of {where}")
        self.layout, self.n_universe, self.n_sampled = layout, n_universe, n_sampled
        # Where each asset's features sit, in an observation over N (the env's feature rows) and over K assets.
        self._rows_n, self._market_n = layout.split(np.arange(layout.size(n_universe)))
        self._rows_k, self._market_k = layout.split(np.arange(layout.size(n_sampled)))
        self.n_features = layout.size(n_sampled) - n_sampled  # observed before the weights held
        self._base = self._rows_k[:, -2] if layout.base else None  # the base's K weights in a gathered row

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """``(K,)`` indices into the universe's assets: uniform without replacement, in random order."""
        return rng.choice(self.n_universe, size=self.n_sampled, replace=False)

    def columns(self, assets: np.ndarray) -> np.ndarray:
        """``(..., n_features)`` column indices into a universe feature row (``(F_N,)``, the weights held excluded)
        that give the sampled assets' feature row in the layout's order; ``assets``: ``(..., K)`` draws."""
        assets = np.asarray(assets)
        index = np.empty((*assets.shape[:-1], self._rows_k.size + self._market_k.size), dtype=np.intp)
        index[..., self._rows_k] = self._rows_n[assets]
        index[..., self._market_k] = self._market_n
        return index[..., : self.n_features]

    def gather(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """One universe feature row ``(F_N,)`` at ``columns`` (``columns(assets)``): the sampled assets' row."""
        return self.renormalised(rows[columns])

    def gather_rows(self, features: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``(n, n_features)``: row ``rows[i]`` of the contiguous ``(R, F_N)`` ``features`` at ``columns[i]``,
        without copying the whole rows (one ``np.take`` on flat indices)."""
        flat = rows[:, None] * features.shape[-1] + columns
        return self.renormalised(np.take(features.reshape(-1), flat))

    def renormalised(self, gathered: np.ndarray) -> np.ndarray:
        """``gathered`` rows with the base's weights (if observed) rescaled to sum to 1 over the sampled assets."""
        if self._base is not None:
            base = gathered[..., self._base]
            gathered[..., self._base] = base / base.sum(axis=-1, keepdims=True)
        return gathered


def take_assets(values: np.ndarray, rows: np.ndarray, assets: np.ndarray) -> np.ndarray:
    """``(n, K)``: row ``rows[i]`` of the contiguous ``(R, N)`` ``values`` (price relatives) at ``assets[i]``."""
    return np.take(values.reshape(-1), rows[:, None] * values.shape[-1] + assets)

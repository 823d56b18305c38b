"""Where a training episode's prices come from (``train_paths``): the data's train split, or a fresh path every
episode of a synthetic market's true law (``law``, ``auto``), of the regime model fitted on the train split
(``fitted``) or of a stationary block bootstrap of the train split's returns (``bootstrap``). ``PortfolioEnv``
resolves its source here once, with the checks that name what does not fit; ``PortfolioEnv.draw_paths`` draws."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ConfigError
from envs.config import EnvConfig
from envs.market import MarketData
from envs.regimes import fitted_regime_model
from envs.sources import market_law
from envs.splits import Split
from envs.synthetic import MarketParams


@dataclass(frozen=True)
class PathSource:
    """``kind``: ``split``, ``law``, ``fitted`` or ``bootstrap``; ``law``: the law fresh paths are drawn from (the
    data's true one, or the one fitted on train); ``bootstrap``: the train split's daily log returns (``(T, K)``)."""

    kind: str = "split"
    law: MarketParams | None = None
    bootstrap: np.ndarray | None = None


def path_source(
    cfg: EnvConfig, market: MarketData, splits: dict[str, Split], *, given_market: bool, base: Any = None
) -> PathSource:
    """The training path source of ``cfg`` over ``market``; the split for any split but ``train``.

    :param given_market: the market was passed in rather than loaded (``auto`` then plays the split).
    :param base: the env's ``envs.bases.ResidualBase``, or ``None``.
    :raises ConfigError: paths that cannot be drawn for this data or base (naming ``train_paths`` or the base).
    """
    warmup = cfg.warmup_days
    source = PathSource()
    if cfg.split == "train" and (cfg.train_paths == "law" or (cfg.train_paths == "auto" and not given_market)):
        law = _check_law(cfg, market, warmup, required=cfg.train_paths == "law")
        source = PathSource("split") if law is None else PathSource("law", law)
    elif cfg.split == "train" and cfg.train_paths in ("fitted", "bootstrap"):
        _check_paths(cfg, market, warmup)
        train = splits["train"]
        if cfg.train_paths == "fitted":
            fitted = fitted_regime_model(cfg, market, train)
            law = MarketParams(
                assets=market.assets,
                regimes=tuple(f"regime {k}" for k in range(fitted.n_regimes)),
                transition=fitted.transition,
                mu=fitted.means,
                cov=fitted.covariances,
            )
            source = PathSource("fitted", law)
        else:
            source = PathSource("bootstrap", bootstrap=market.log_returns()[train.first - 1 : train.last])
    if source.kind != "split" and base is not None and base.estimated:
        raise ConfigError(
            f"policy.base: '{base.name}' re-estimates every day of a path (skfolio), too slow for a fresh "
            f"{source.kind} path every episode; train it on the split (train_paths: split) or pick a base "
            "computed in one pass (equal_weight, regime_growth)"
        )
    return source


def _check_law(cfg: EnvConfig, market: MarketData, warmup: int, *, required: bool) -> MarketParams | None:
    """The law to draw training paths from; ``None`` (train on the split) when ``auto`` finds none that fits."""
    law = market_law(cfg.data)
    where = "env_config.train_paths: 'law'"
    problem = None
    if law is None:
        problem = (
            f"{where} needs a synthetic market (built-in, or a CSV with its .params.json); {cfg.data.path} has none"
        )
    elif cfg.data.cash or cfg.observe_extras or tuple(law.assets) != market.assets:
        problem = f"{where} simulates the law's assets {list(law.assets)} only: no cash, no extras, no asset subset"
    elif warmup + cfg.episode_days + 1 > market.n_days:
        problem = (
            f"{where}: paths of {warmup} warm-up + {cfg.episode_days} days exceed the data's {market.n_days} dates"
        )
    if problem is not None and required:
        raise ConfigError(problem)
    return None if problem is not None else law


def _check_paths(cfg: EnvConfig, market: MarketData, warmup: int) -> None:
    where = f"env_config.train_paths: '{cfg.train_paths}'"
    if cfg.data.cash or cfg.observe_extras:
        raise ConfigError(f"{where} simulates asset prices only: no cash asset, no observed extras")
    if warmup + cfg.episode_days + 1 > market.n_days:
        raise ConfigError(
            f"{where}: paths of {warmup} warm-up + {cfg.episode_days} days exceed the data's {market.n_days} dates"
        )

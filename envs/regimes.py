"""The regime model as the platform's configs use it: built from a config's parameters, resolved for a market
(fitted on its train split, or a synthetic market's true law), and carried in an env config so that every process of
a run, its validation and the exported model filter with one model. The HMM maths is ``quant.regimes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import ConfigError
from envs.config import RegimeParams
from envs.sources import market_law
from quant.regimes import RegimeModel, fit_regimes, from_law


def model_from_params(params: Any) -> RegimeModel:
    """A ``RegimeModel`` from the ``RegimeParams`` an env config carries."""
    return RegimeModel(
        transition=np.asarray(params.transition, dtype=np.float64),
        means=np.asarray(params.means, dtype=np.float64),
        covariances=np.asarray(params.covariances, dtype=np.float64),
        source=params.source,
    )


_FITTED: dict[tuple, RegimeModel] = {}


def resolve_regime_model(config: Any, market: Any, train: Any) -> RegimeModel:
    """The regime model an env config asks for: the one it carries (``regimes.model``, what training fills in and
    exported models keep), else the data's true law (``regimes.law: true``, synthetic markets), else EM on the train
    split's returns (cached per process: many envs of one run share one fit).

    :param config: an ``EnvConfig``; :param market: its ``MarketData``; :param train: its train ``Split``.
    :raises ConfigError: the true law asked for on data that has none, or a fit that cannot be made (named).
    """

    regimes = config.regimes
    if regimes.model is not None:
        model = model_from_params(regimes.model)
        if model.means.shape[1] != market.n_assets:
            raise ConfigError(
                f"env_config.regimes.model: fitted on {model.means.shape[1]} assets, the data has {market.n_assets}"
            )
        return model
    if regimes.law == "true":
        law = market_law(config.data)
        if law is None or tuple(law.assets) != tuple(market.assets):
            raise ConfigError(
                "env_config.regimes.law: 'true' filters with a synthetic market's true law; "
                f"{config.data.path or 'the data'} has none for these assets (use 'fitted')"
            )
        return from_law(law.transition, law.mu, law.cov)
    key = (
        market.fingerprint(),
        train.first,
        train.last,
        regimes.n_regimes,
        regimes.max_regimes,
        regimes.covariance,
        regimes.seed,
        regimes.iterations,
        regimes.restarts,
    )
    if key not in _FITTED:
        returns = market.log_returns()[train.first - 1 : train.last]  # the train days' returns, day first .. last
        source = f"fitted on {market.source} {market.dates[train.first]} .. {market.dates[train.last]}"
        fitted = fit_regimes(
            returns,
            regimes.n_regimes,
            covariance=regimes.covariance,
            max_regimes=regimes.max_regimes,
            seed=regimes.seed,
            iterations=regimes.iterations,
            restarts=regimes.restarts,
            where="env_config.regimes",
        )
        _FITTED[key] = RegimeModel(fitted.transition, fitted.means, fitted.covariances, source=source)
    return _FITTED[key]


def fitted_regime_model(config: Any, market: Any, train: Any) -> RegimeModel:
    """The law fitted on the train split, whatever ``config.regimes.law`` says: what the classical ``regime_growth``
    baseline filters with. An agent's carried model is reused when it was fitted (same data, same split)."""
    carried = config.regimes.model
    if carried is not None and carried.source.startswith("fitted"):
        return model_from_params(carried)
    fitted = config.regimes.model_copy(update={"law": "fitted", "model": None})
    return resolve_regime_model(config.model_copy(update={"regimes": fitted}), market, train)


def carry_regime_model(config: Any, model: RegimeModel | None) -> Any:
    """``config`` (an ``EnvConfig``) carrying ``model`` in ``regimes.model`` (unchanged when it carries one already or
    ``model`` is None): what training does before the first step, so that every process filters with one model."""

    if model is None or config.regimes.model is not None:
        return config
    regimes = config.regimes.model_copy(update={"model": RegimeParams.model_validate(model.to_json())})
    return config.model_copy(update={"regimes": regimes})

"""envs.regimes with RegimeConfig.covariance: the structure a config asks for is the one fitted (and cached apart),
carried downstream as full covariance matrices; 'auto' by default, unknown structures rejected by name."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import parse_config
from core.errors import ConfigError
from envs.config import EnvConfig, RegimeConfig
from envs.regimes import resolve_regime_model
from envs.splits import split_market


def test_the_default_is_auto():
    assert RegimeConfig().covariance == "auto"


def test_the_configured_structure_is_fitted_and_carried_as_full_matrices(tiny, small_config):
    train = split_market(tiny.market, warmup_days=small_config.warmup_days)["train"]

    def fitted(covariance: str):
        regimes = RegimeConfig(n_regimes=2, covariance=covariance, restarts=1)
        return resolve_regime_model(small_config.model_copy(update={"regimes": regimes}), tiny.market, train)

    diagonal, full = fitted("diag"), fitted("full")

    assert diagonal.covariances.shape == full.covariances.shape == (2, 4, 4)
    off_diagonal = ~np.eye(4, dtype=bool)
    assert (diagonal.covariances[:, off_diagonal] == 0).all()
    assert (full.covariances[:, off_diagonal] != 0).all()  # not the diagonal fit's cached model


def test_an_unknown_structure_is_rejected_naming_the_field():
    with pytest.raises(ConfigError, match=r"regimes\.covariance"):
        parse_config(EnvConfig, {"regimes": {"covariance": "spherical"}}, where="env.yaml")

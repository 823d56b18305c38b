"""Format version 6: the exported module's kind and feature spec (policies.module_spec), read back as written,
derived for files of earlier versions, checked against the observation; what it says about allocating other assets
(policies.transfer); and a loaded asset-shared policy allocating any number of assets. No Ray cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import DataError
from envs.config import EnvConfig, RegimeConfig, RegimeParams
from envs.features import latest_observation
from envs.portfolio_env import PortfolioEnv
from policies.format import FORMAT_VERSION, ModelMetadata, read_metadata
from policies.load import load_policy
from policies.module_spec import FeatureSpec, LayoutRecord, ModuleSpec
from policies.policy import Policy
from policies.transfer import FLAT, transfer_refusal, universe_ties
from quant.regimes import from_law
from tests.support.agents import export_untrained
from tests.support.shared_agents import build_shared_module, export_shared


def true_regimes(tiny) -> dict:
    law = from_law(tiny.params.transition, tiny.params.mu, tiny.params.cov)
    return {"regimes": RegimeConfig(window_days=20, model=RegimeParams.model_validate(law.to_json()))}


CONFIGS = {
    "plain": {},
    "regimes": {"observe_regimes": True},
    "regime_growth base": {"policy": {"base": "regime_growth"}, "regimes_needed": True},
    "equal_weight base, log volatility": {"policy": {"base": "equal_weight"}, "log_volatility": True},
}


def config_for(name: str, tiny, small_config) -> EnvConfig:
    case = dict(CONFIGS[name])
    regimes = true_regimes(tiny) if case.pop("regimes_needed", False) or case.get("observe_regimes") else {}
    return EnvConfig.model_validate(small_config.model_dump() | case | regimes)


def rewrite(agent_dir, change) -> None:
    path = agent_dir / "metadata.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_an_asset_shared_export_records_its_kind_and_features_and_reads_back_as_written(
    name, tiny, small_config, tmp_path
):
    env = PortfolioEnv(config_for(name, tiny, small_config), market=tiny.market)
    meta = read_metadata(export_shared(env, tmp_path, tmp_path / "models"))
    n_regimes = env.regime_model.n_regimes if env.config.observe_regimes else 0
    assert meta.format_version == FORMAT_VERSION == 6
    assert meta.module.kind == "asset_shared"
    assert meta.module.features == FeatureSpec.of_env(env.config, n_regimes)
    features = meta.module.features
    assert features.asset_layout.size(4) == meta.observation.size == env.observation_space.shape[0]
    assert (features.vol_window_days, features.log_volatility, features.base) == (
        20,
        env.config.log_volatility,
        env.config.policy.base,
    )
    assert features.regime_model == (name in ("regimes", "regime_growth base"))
    assert features.regime_window_days == (20 if features.regime_model else 0)
    assert ModelMetadata.model_validate_json(meta.model_dump_json()) == meta  # the JSON round trip


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("version", [5, 4, 3])
def test_files_of_earlier_versions_read_as_flat_modules_with_the_features_their_observation_states(
    name, version, tiny, small_config, tmp_path
):
    env = PortfolioEnv(config_for(name, tiny, small_config), market=tiny.market)
    agent_dir = export_untrained(env, "ppo", tmp_path, tmp_path / "models")
    written = read_metadata(agent_dir).module  # what version 6 writes for a flat module

    def downgrade(raw):
        raw["format_version"] = version
        del raw["module"]
        if version < 4:
            del raw["module_dir"]

    rewrite(agent_dir, downgrade)
    meta = read_metadata(agent_dir)
    assert meta.format_version == 6 and meta.module == written and meta.module.kind == "mlp"


def test_a_module_spec_that_disagrees_with_the_observation_is_named(tiny, small_config, tmp_path):
    env = PortfolioEnv(small_config, market=tiny.market)
    agent_dir = export_shared(env, tmp_path, tmp_path / "models")
    rewrite(agent_dir, lambda raw: raw["module"]["features"]["layout"].update(window_days=3))
    with pytest.raises(
        DataError, match=r"module\.features\.layout gives 20 numbers over the 4 assets, but observation.size is 48"
    ):
        read_metadata(agent_dir)
    rewrite(agent_dir, lambda raw: raw["module"].update(kind="transformer"))
    with pytest.raises(DataError, match=r"field 'module\.kind': Input should be 'mlp' or 'asset_shared'"):
        read_metadata(agent_dir)


def module(kind="asset_shared", n_regimes=0, base="none", extras=()) -> ModuleSpec:
    layout = LayoutRecord(window_days=5, n_extras=len(extras), n_regimes=n_regimes, base=base != "none")
    features = FeatureSpec(layout=layout, vol_window_days=20, extras=list(extras), base=base)
    return ModuleSpec(kind=kind, features=features)


def test_only_an_asset_shared_module_observing_nothing_tied_to_its_assets_may_allocate_others():
    assert transfer_refusal(module()) is None
    assert transfer_refusal(module(base="equal_weight")) is None  # equal weight over whatever assets are given
    assert transfer_refusal(module(base="min_variance")) is None  # estimated from the closes given
    assert universe_ties(module("mlp")) == [FLAT]
    assert "regime probabilities" in transfer_refusal(module(n_regimes=3))
    assert "residual base 'regime_growth'" in transfer_refusal(module(base="regime_growth"))
    assert "extra columns ['vix']" in transfer_refusal(module(extras=("vix",)))
    assert len(universe_ties(module(n_regimes=2, base="regime_growth", extras=("vix",)))) == 3


def test_a_loaded_asset_shared_policy_allocates_any_number_of_assets(tiny, small_config, tmp_path):
    env = PortfolioEnv(small_config, market=tiny.market)
    agent_dir = export_shared(env, tmp_path, tmp_path / "models")
    policy, meta = load_policy(agent_dir)
    assert policy.layout == meta.module.features.asset_layout
    same = Policy(build_shared_module(env), env.action_map)  # the module as built, on its own 4 assets
    observation = latest_observation(tiny.market.closes[:301], np.full(4, 0.25), 10, 20)
    np.testing.assert_allclose(policy.weights(observation), same.weights(observation), rtol=1e-6)
    rng = np.random.default_rng(0)
    for n_assets in (7, 2, 30):
        closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(40, n_assets)), axis=0))
        held = rng.dirichlet(np.ones(n_assets))
        weights = policy.weights(latest_observation(closes, held, 10, 20))
        assert weights.shape == (n_assets,) and (weights >= 0).all()
        np.testing.assert_allclose(weights.sum(), 1.0, atol=1e-9)
        assert len(np.unique(weights.round(6))) > 1  # each asset its own weight, from its own features
        assert policy.action_map_for(n_assets) is policy.action_map_for(n_assets)  # one map per K, cached
    flat, _ = load_policy(export_untrained(env, "ppo", tmp_path, tmp_path / "models"))
    with pytest.raises(ValueError, match=r"takes 4 assets, not 7: it is not asset-shared"):
        flat.action_map_for(7)

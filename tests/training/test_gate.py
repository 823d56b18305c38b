"""The promotion gate: an agent is promoted only when it beats the gate's baseline on validation beyond luck (the
interval widened for every comparison); else the best baseline that does; else the gate's baseline."""

from __future__ import annotations

import numpy as np
import pytest

from backtesting.tuning import RATES
from core.errors import ConfigError
from envs.config import EnvConfig
from quant.growth import growth_optimal_batch, mixture_inputs
from quant.regimes import from_law
from training.gate import GateConfig, Paired, check_gate_data, decide, gate_decision, widened_z


def test_an_agent_is_promoted_only_when_its_widened_lower_bound_is_above_zero():
    config = GateConfig()
    strong = Paired("ppo", "agent", 4e-4, 1e-4)
    marginal = Paired("sac", "agent", 2.2e-4, 1e-4)
    baseline = Paired("regime_growth", "baseline", 3e-4, 1e-4)
    _, promoted, kind, reason = decide([marginal, strong, baseline], config, comparisons=3)
    assert (promoted, kind) == ("ppo", "agent") and "agent promoted" in reason
    # the marginal agent passes one comparison (z 1.96) but not eight (z 2.73)
    assert decide([marginal], config, 1)[1] == "sac"
    entries, promoted, kind, reason = decide([marginal, baseline], config, comparisons=8)
    assert widened_z(0.05, 8) > widened_z(0.05, 1) > 1.95
    assert (promoted, kind) == ("regime_growth", "baseline") and "no agent beat equal_weight beyond luck" in reason
    sac = next(e for e in entries if e.name == "sac")
    assert sac.lower < 0 < sac.difference and sac.upper - sac.lower == pytest.approx(2 * widened_z(0.05, 8) * 1e-4)
    _, promoted, kind, reason = decide([Paired("ppo", "agent", 5e-5, 1e-4)], config, 2)
    assert (promoted, kind) == ("equal_weight", "baseline") and reason.endswith("serving equal_weight")


class FilteredOracle:
    """A stand-in agent that is the filtered oracle: the growth-optimal mix of the one-day predictive mixture of the
    regime probabilities it observes (filtered with the true law)."""

    def __init__(self, config: EnvConfig, law) -> None:
        self.model = from_law(law.transition, law.mu, law.cov)
        n_assets = len(law.assets)
        self.probabilities = slice(config.window_days * n_assets + n_assets, -n_assets)

    def weights_batch(self, observations: np.ndarray) -> np.ndarray:
        filtered = np.asarray(observations[:, self.probabilities], dtype=np.float64)
        mu, cov = mixture_inputs(filtered @ self.model.transition, self.model.means, self.model.covariances)
        return growth_optimal_batch(mu, cov)

    def weights(self, observation: np.ndarray) -> np.ndarray:
        return self.weights_batch(observation[None, :])[0]


class EqualWeights:
    def weights_batch(self, observations: np.ndarray) -> np.ndarray:
        return np.full((len(observations), 4), 0.25)

    def weights(self, observation: np.ndarray) -> np.ndarray:
        return self.weights_batch(observation[None, :])[0]


@pytest.fixture(scope="module")
def oracle_setup():
    from envs.sources import market_law

    config = EnvConfig(observe_regimes=True, regimes={"law": "true"}, train_paths="law", validation_paths=16)
    return config, market_law(config.data)


@pytest.mark.slow
def test_the_filtered_oracle_as_an_agent_is_promoted_on_the_synthetic_market(oracle_setup):
    config, law = oracle_setup
    record = gate_decision({"oracle": (FilteredOracle(config, law), config)}, GateConfig(baselines=("equal_weight",)))
    oracle = next(e for e in record.entries if e.name == "oracle")
    assert (record.promoted, record.promoted_kind) == ("oracle", "agent"), record.reason
    assert oracle.lower > 0 and record.method.startswith("100 fresh paths") and record.candidates == 1


def test_an_agent_that_is_equal_weight_is_not_promoted(oracle_setup):
    config, _ = oracle_setup
    gate = GateConfig(baselines=("equal_weight",), paths=12)
    record = gate_decision({"same": (EqualWeights(), config)}, gate, n_trials=4)
    same = next(e for e in record.entries if e.name == "same")
    assert abs(same.difference) < 1e-4 and same.lower < 0  # daily rebalancing to 1/N costs a little more
    assert (record.promoted, record.promoted_kind) == ("equal_weight", "baseline") and record.candidates == 4


def test_bad_gate_settings_are_named_before_anything_runs(oracle_setup):
    from training.config import resolve_train_config

    for bad, field in [({"baseline": "buy_and_hold"}, "gate.baseline"), ({"baselines": ["magic"]}, "gate.baselines")]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            resolve_train_config("ppo", overrides={"gate": bad})
    config, _ = oracle_setup
    with pytest.raises(ConfigError, match=r"gate\.min_days: the validation split of the built-in market has \d+ days"):
        check_gate_data(config, GateConfig(min_days=5000))
    check_gate_data(config, GateConfig(min_days=5000, enabled=False))  # an off gate needs nothing


@pytest.fixture(scope="module")
def exported(tiny_csv, tmp_path_factory):
    """Two exported (untrained) agents on the tiny CSV market's own splits, with different warm-ups (10 and 60 days
    of returns observed)."""
    from envs.portfolio_env import PortfolioEnv
    from tests.support.agents import export_untrained

    root = tmp_path_factory.mktemp("gate")
    config = EnvConfig(data={"path": str(tiny_csv)}, train_paths="split", validation_paths=0, vol_window_days=20)
    for agent, algo, window in (("ppo", "ppo", 10), ("dqn", "dqn", 60)):
        update = {"window_days": window} | ({"action_mode": "discrete"} if algo == "dqn" else {})
        export_untrained(PortfolioEnv(config.model_copy(update=update)), algo, root, root / "models", agent=agent)
    return root / "models"


def test_run_gate_plays_agents_of_different_warm_ups_on_the_same_days_and_records_the_decision(exported):
    from policies.format import read_metadata, read_registry
    from training.gate import run_gate

    before = read_registry(exported)
    with pytest.raises(ConfigError, match=r"gate\.min_days: validation has \d+ days, fewer than 5000"):
        run_gate(exported, GateConfig(min_days=5000, resamples=200))
    assert read_registry(exported) == before  # a gate that fails writes nothing

    gate = GateConfig(baselines=("equal_weight", "regime_growth"), resamples=200)
    record = run_gate(exported, gate, n_trials=6)
    registry = read_registry(exported)
    assert registry.gate == record and registry.promoted == record.promoted
    assert {e.name for e in record.entries} == {"ppo", "dqn", "regime_growth"}
    assert record.candidates == 6 + 1 and record.z == pytest.approx(widened_z(0.05, 7))
    assert record.method.startswith("stationary block bootstrap") and record.regime_trade_rate in RATES
    days = int(record.validation.rsplit("(", 1)[1].split()[0])
    assert days >= gate.min_days  # the dqn's 60-day warm-up fixed the frame: both agents played these days
    for entry in record.entries:
        assert entry.lower < entry.difference < entry.upper
        assert entry.upper - entry.lower == pytest.approx(2 * record.z * entry.stderr)
        # the validation distribution a served agent's live behaviour is tested against (guardrails.consistency)
        assert entry.days == days and entry.daily_std > 0
        low, high = entry.daily_std_band  # how the spread moves over 20-day windows
        assert 0 < low < entry.daily_std < high
    versions = {e.name: e.model_version for e in record.entries}
    assert versions == {
        "ppo": read_metadata(exported / "ppo").model_version,
        "dqn": read_metadata(exported / "dqn").model_version,
        "regime_growth": None,
    }


def test_law_paths_give_every_candidate_the_same_days_whatever_its_warm_up(oracle_setup):
    config, _ = oracle_setup
    short = config.model_copy(update={"observe_regimes": False, "window_days": 5, "vol_window_days": 10})
    gate = GateConfig(baselines=("equal_weight", "regime_growth"), paths=6)
    record = gate_decision({"wide": (EqualWeights(), config), "short": (EqualWeights(), short)}, gate)
    wide, narrow = (next(e for e in record.entries if e.name == n) for n in ("wide", "short"))
    # the same weights on the same days: only the first day's trade differs (from holdings drifted since each warm-up)
    assert wide.difference == pytest.approx(narrow.difference, abs=1e-7) and wide.difference != narrow.difference
    assert "rate chosen on 16 validation paths" in record.method and record.regime_trade_rate in RATES

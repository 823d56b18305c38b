"""demo.py (``make demo``): the end-to-end run on the built-in synthetic market works and reports every strategy."""

from __future__ import annotations

import pytest

import demo
from tests.support.agents import export_untrained
from tests.support.markets import STRATEGY_NAMES

pytestmark = pytest.mark.slow

STRATEGIES = STRATEGY_NAMES


def export_untrained_agent(models):
    """An exported (untrained) PPO agent on the built-in market: the demo's agent table without minutes of training."""
    from envs.config import load_env_config
    from envs.portfolio_env import PortfolioEnv

    env = PortfolioEnv(load_env_config())  # every demo agent shares configs/env.yaml and its built-in market
    export_untrained(env, "ppo", models.parent, models, agent="ppo_untrained")


def test_demo_reports_every_strategy_on_the_builtin_markets_test_split(repo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)  # the demo reads configs/*.yaml relative to the checkout, as `make demo` runs it
    models = tmp_path / "models"
    export_untrained_agent(models)

    report = tmp_path / "report"
    args = [
        "--skip-training",
        "--skip-serving",
        "--models",
        str(models),
        "--report",
        str(report),
        "--held-out-paths",
        "4",
    ]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert demo.main(args) == 0
    assert (report / "report.html").is_file()

    captured = capsys.readouterr()
    out = captured.out
    assert (
        "the built-in synthetic market (seed 7, 25 years, 4 assets, 3 regimes): STOCK, BOND, GOLD, CRYPTO; 6,301 days"
        in out
    )
    assert "equal weight 0.000409, oracle constant mix 0.000525 (STOCK 18%, GOLD 34%, CRYPTO 48%)" in out
    table = out[out.index("Test split") :]
    assert "costs 10 bps" in table
    for name in STRATEGIES:
        assert f"\n{name} " in table, name
    agents = out[out.index("Agents (selected on validation only)") :]
    for name in ("ppo_untrained",) + STRATEGIES:
        assert f"\n{name} " in agents, name
    assert "==> 4/5" in captured.err and "Demo finished" in captured.err


@pytest.mark.ray
def test_demo_runs_the_pipeline_on_real_prices_built_in(tmp_path, monkeypatch, capsys):
    """`python -m demo --sample etf-factors` (README: Real prices built in), on a one-iteration sweep."""
    import yaml

    from tests.support.paths import REPO_ROOT

    sweep = yaml.safe_load((REPO_ROOT / "configs" / "sweep.yaml").read_text())
    sweep.update(
        storage_path=str(tmp_path / "sweeps"),
        num_samples=1,
        mlflow={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    sweep["algos"] = {"ppo": {"timesteps": 1000, "search_space": {}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = [
        "--sample",
        "etf-factors",
        "--sweep-config",
        str(tmp_path / "sweep.yaml"),
        "--skip-serving",
        "--no-dashboard",
    ]
    assert demo.main(args) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "data" / "etf-factors.csv").is_file() and (
        tmp_path / "models" / "etf-factors" / "ppo" / "metadata.json"
    ).is_file()
    agents = out[out.index("Agents (selected on validation only)") :]
    for name in ("ppo", "equal_weight", "risk_parity", "regime_growth"):
        assert f"\n{name} " in agents, name
    assert "oracle" not in agents and "fresh paths" not in out  # a real market has no known law

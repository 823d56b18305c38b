"""demo.py (``make demo``): the end-to-end run on the built-in synthetic market works and reports every strategy."""

from __future__ import annotations

import json

import demo
from envs.market import load_csv
from envs.synthetic import load_params

STRATEGIES = (
    "equal_weight",
    "buy_and_hold",
    "fixed_mix",
    "min_variance",
    "mean_variance",
    "risk_parity",
    "growth_optimal",
    "oracle_constant_mix",
    "oracle_regime_aware",
)


def export_untrained_agent(data, models):
    """An exported (untrained) PPO agent for the demo's data: the demo's agent table without minutes of training."""
    from envs.config import EnvConfig, load_yaml, parse_config
    from envs.portfolio_env import PortfolioEnv
    from tests.test_export import build_module, export

    shared = parse_config(EnvConfig, load_yaml("configs/env.yaml"))  # every demo agent shares configs/env.yaml
    env = PortfolioEnv(shared.model_copy(update={"data": shared.data.model_copy(update={"path": str(data)})}))
    module = build_module(env, "ppo")
    module.save_to_path(str(models.parent / "module"))
    export(env, models.parent / "module", models, agent="ppo_untrained")


def test_demo_writes_the_market_and_prints_every_strategy_on_the_test_split(repo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)  # the demo reads configs/*.yaml relative to the checkout, as `make demo` runs it
    data = tmp_path / "synthetic.csv"
    models = tmp_path / "models"
    from envs.synthetic import write_synthetic

    write_synthetic(data, seed=7, years=25, n_assets=4, n_regimes=3)
    export_untrained_agent(data, models)

    report = tmp_path / "report"
    args = ["--data", str(data), "--seed", "7", "--skip-training", "--skip-serving", "--models", str(models), "--report", str(report)]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert demo.main(args) == 0
    assert (report / "report.html").is_file()

    out = capsys.readouterr().out
    assert load_csv(data).n_days == 25 * 252 + 1 and load_params(data) is not None
    table = out[out.index("Test split") :]
    assert "costs 10 bps" in table
    for name in STRATEGIES:
        assert f"\n{name} " in table, name
    assert "oracle constant mix" in table and "regime-aware oracle" in table
    agents = out[out.index("Agents (selected on validation only)") :]
    for name in ("ppo_untrained",) + STRATEGIES:
        assert f"\n{name} " in agents, name
    decoder = json.JSONDecoder()
    synth, end = decoder.raw_decode(out)  # stdout opens with the synth and validate steps' JSON
    summary, _ = decoder.raw_decode(out, end + 1)
    assert synth["csv"] == str(data) and set(synth["oracle"]) == {"weights", "daily_log_growth"}
    assert summary["rows"] == 25 * 252 + 1 and list(summary["assets"]) == ["STOCK", "BOND", "GOLD", "CRYPTO"]

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


def test_demo_writes_the_market_and_prints_every_strategy_on_the_test_split(repo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)  # the demo reads configs/*.yaml relative to the checkout, as `make demo` runs it
    data = tmp_path / "synthetic.csv"

    assert demo.main(["--data", str(data), "--seed", "7"]) == 0

    out = capsys.readouterr().out
    assert load_csv(data).n_days == 25 * 252 + 1 and load_params(data) is not None
    table = out[out.index("Test split") :]
    assert "costs 10 bps" in table
    for name in STRATEGIES:
        assert f"\n{name} " in table, name
    assert "oracle constant mix" in table and "regime-aware oracle" in table
    decoder = json.JSONDecoder()
    synth, end = decoder.raw_decode(out)  # stdout opens with the synth and validate steps' JSON
    summary, _ = decoder.raw_decode(out, end + 1)
    assert synth["csv"] == str(data) and set(synth["oracle"]) == {"weights", "daily_log_growth"}
    assert summary["rows"] == 25 * 252 + 1 and list(summary["assets"]) == ["STOCK", "BOND", "GOLD", "CRYPTO"]

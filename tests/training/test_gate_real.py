"""On real prices an agent trained for 2,000 steps cannot be told from 1/N: the gate must serve a baseline."""

from __future__ import annotations

import json

import pytest

from envs.samples import write_sample
from tests.support.markets import fast_overrides
from training.config import resolve_train_config
from training.train import train

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_barely_trained_agent_on_real_prices_is_not_promoted(ray_local, tmp_path):
    data = tmp_path / "etf-factors.csv"
    write_sample("etf-factors", data)
    overrides = fast_overrides("ppo", data, timesteps=2000, seed=0)
    overrides["env"] |= {"train_paths": "bootstrap"}
    overrides["gate"] = overrides["gate"] | {"resamples": 1000}
    config = resolve_train_config("ppo", overrides=overrides)
    summary = train(config, agent="ppo", runs_dir=tmp_path / "runs", models_dir=tmp_path / "models")
    registry = json.loads((tmp_path / "models" / "registry.json").read_text())
    gate = registry["gate"]
    ppo = next(e for e in gate["entries"] if e["name"] == "ppo")
    assert summary["promoted"] == registry["promoted"] == gate["promoted"] != "ppo", gate["reason"]
    assert gate["promoted_kind"] == "baseline" and ppo["lower"] <= 0
    assert gate["method"].startswith("stationary block bootstrap") and "etf-factors" in gate["validation"]

"""envs.config and core.errors: configs are validated once, at the edge, with errors naming the field."""

from __future__ import annotations

import pydantic
import pytest

from core.config import load_yaml, parse_config
from core.errors import ConfigError, DataError
from envs.config import DataConfig, EnvConfig
from quant.registry import BaselinesConfig


def test_project_errors_are_value_errors():
    assert issubclass(DataError, ValueError) and issubclass(ConfigError, ValueError)


def test_an_empty_config_is_the_documented_defaults():
    config = parse_config(EnvConfig, None)

    assert config == EnvConfig()
    assert (config.window_days, config.cost_bps, config.episode_days, config.action_mode) == (
        20,
        10.0,
        252,
        "continuous",
    )
    assert config.data.path is None


# The project's choices in configs/env.yaml, where they differ from EnvConfig's neutral defaults (README: Environment).
ENV_YAML_CHOICES = {
    "window_days": 0,
    "vol_window_days": 20,
    "log_volatility": True,
    "observe_regimes": True,
    "reward": "excess_log_growth",
    "train_paths": "auto",
    "validation_paths": 16,
}


def test_shipped_yaml_files_state_the_defaults(repo_root):
    """configs/env.yaml lists every field (defaults but for the project's stated choices); the baselines section of
    configs/evaluation.yaml lists the defaults."""
    raw = load_yaml(repo_root / "configs" / "env.yaml")
    assert set(raw) == set(EnvConfig.model_fields) and set(raw["data"]) == set(DataConfig.model_fields)
    assert parse_config(EnvConfig, raw) == EnvConfig(**ENV_YAML_CHOICES)
    evaluation = load_yaml(repo_root / "configs" / "evaluation.yaml")
    assert parse_config(BaselinesConfig, evaluation["baselines"]) == BaselinesConfig()


def test_nested_dicts_become_typed_frozen_objects():
    config = parse_config(EnvConfig, {"data": {"assets": ["A", "B"], "train_end": "2010-12-31"}, "cost_bps": 5})

    assert isinstance(config.data, DataConfig)
    assert config.data.assets == ("A", "B") and config.data.train_end == "2010-12-31"
    assert config.cost_bps == 5.0
    with pytest.raises(pydantic.ValidationError):
        config.cost_bps = 0.0  # type: ignore[misc]


def test_a_validated_config_passes_through_unchanged():
    config = EnvConfig(window_days=5)

    assert parse_config(EnvConfig, config) is config


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"episode_dayz": 10}, r"env_config: episode_dayz: Extra inputs are not permitted"),
        ({"grid_steps": 0}, r"env_config: grid_steps: Input should be greater than or equal to 1"),
        (
            {"reward": "profit"},
            r"env_config: reward: Input should be 'log_growth', 'excess_log_growth', 'differential_sharpe' or 'mean_variance'",
        ),
        (
            {"data": {"synthetic_years": 500}},
            r"env_config: data\.synthetic_years: Input should be less than or equal to 200",
        ),
        (
            {"data": {"cash": True, "rf_column": "rf"}},
            r"env_config: data: .*rf_column 'rf' must also be listed in extra_columns",
        ),
    ],
)
def test_bad_field_is_a_config_error_naming_it(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(EnvConfig, raw, where="env_config")


def test_load_yaml_reads_a_mapping(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("cost_bps: 5\ndata:\n  cash: true\n")

    assert load_yaml(path) == {"cost_bps": 5, "data": {"cash": True}}


def test_empty_yaml_is_an_empty_mapping(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")

    assert load_yaml(path) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [("cost_bps: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "expected a mapping at the top level, got list")],
)
def test_bad_yaml_is_a_config_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        load_yaml(path)


def test_missing_yaml_is_a_config_error_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'absent.yaml'}: no such config file"):
        load_yaml(tmp_path / "absent.yaml")

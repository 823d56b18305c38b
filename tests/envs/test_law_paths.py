"""PortfolioEnv on fresh training paths: a synthetic market's law (train_paths law / auto), the regime model fitted on
the train split (fitted) or a block bootstrap of it (bootstrap); other splits and validation stay on the data."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from envs.config import DataConfig
from envs.portfolio_env import PortfolioEnv
from tests.support.markets import full_pass

# -- training on the law of a synthetic market ----------------------------------------------------------------------


def law_config(small_config, **update):
    return small_config.model_copy(
        update={"train_paths": "law", "data": small_config.data.model_copy(update={"synthetic_years": 4}), **update}
    )


def test_law_paths_are_fresh_every_episode_and_repeat_with_the_seed(tiny, small_config):
    env = PortfolioEnv(law_config(small_config))
    first, _ = env.reset(seed=11)
    first_closes = env.market.closes.copy()
    second, _ = env.reset()
    again, _ = PortfolioEnv(law_config(small_config)).reset(seed=11)

    assert not np.array_equal(first_closes, env.market.closes)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)
    # No path is a window of the data set's own prices.
    assert not np.isin(first_closes[1:], tiny.market.closes).any()


def test_law_episodes_are_episode_days_long_and_other_splits_use_the_data(tiny, small_config):
    env = PortfolioEnv(law_config(small_config))
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, info = env.step(np.zeros(4, dtype=np.float32))
        steps, done = steps + 1, terminated or truncated
    assert steps == small_config.episode_days and terminated  # the path ends with the episode

    validation = PortfolioEnv(full_pass(law_config(small_config), "validation"))
    reference = PortfolioEnv(
        full_pass(small_config.model_copy(update={"data": law_config(small_config).data}), "validation")
    )
    np.testing.assert_array_equal(validation.reset(seed=0)[0], reference.reset(seed=0)[0])
    np.testing.assert_array_equal(validation.market.closes, reference.market.closes)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"episode_days": None}, r"train_paths 'law' draws paths of episode_days days"),
        ({"data": {"cash": True, "synthetic_years": 4}}, r"train_paths: 'law' simulates the law's assets"),
    ],
)
def test_law_paths_need_a_synthetic_market_and_an_episode_length(small_config, update, message):
    config = law_config(small_config).model_dump()
    config.update(update)
    with pytest.raises(ConfigError, match=message):
        PortfolioEnv(config)


def test_law_paths_of_a_csv_without_its_law_are_a_config_error(tmp_path, tiny, small_config):
    path = tmp_path / "prices.csv"
    tiny.market.to_csv(path)
    config = law_config(small_config).model_dump()
    config["data"] = {"path": str(path)}
    with pytest.raises(ConfigError, match=r"needs a synthetic market .*prices\.csv has none"):
        PortfolioEnv(config)


def test_auto_paths_use_the_law_when_there_is_one_and_the_split_otherwise(tmp_path, tiny, small_config):
    auto = law_config(small_config, train_paths="auto")
    assert PortfolioEnv(auto).trains_on_law
    assert not PortfolioEnv(auto, market=tiny.market).trains_on_law  # a market handed in has no known law
    path = tmp_path / "prices.csv"
    tiny.market.to_csv(path)
    on_csv = auto.model_copy(update={"data": auto.data.model_copy(update={"path": str(path)})})
    assert not PortfolioEnv(on_csv).trains_on_law
    assert not PortfolioEnv(auto.model_copy(update={"data": auto.data.model_copy(update={"cash": True})})).trains_on_law


@pytest.mark.parametrize("kind", ["fitted", "bootstrap"])
def test_fitted_and_bootstrap_paths_train_on_fresh_paths_of_real_data_and_validate_on_its_split(
    tmp_path, tiny, small_config, kind
):
    """On data without a known law (a plain CSV), every episode is a fresh path from the train split; the other splits
    and validation stay on the data's own days."""
    csv = tmp_path / "prices.csv"
    tiny.market.to_csv(csv)  # no .params.json beside it: no known law
    config = small_config.model_copy(
        update={"train_paths": kind, "data": DataConfig(path=str(csv)), "episode_days": 60}
    )
    env = PortfolioEnv(config)
    assert env.path_kind == kind and not env.trains_on_law
    first, _ = env.reset(seed=1)
    closes_first = env.market.closes.copy()
    env.reset(seed=2)
    assert not np.array_equal(env.market.closes, closes_first)  # a fresh path each episode
    env.reset(seed=1)
    np.testing.assert_array_equal(env.market.closes, closes_first)  # the same path for the same seed
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 60
    if kind == "bootstrap":  # every simulated daily return vector is one of the train split's
        on_split = PortfolioEnv(config.model_copy(update={"train_paths": "split"}))  # the CSV's (rounded) prices
        train = on_split.splits["train"]
        pool = on_split.market.log_returns()[train.first - 1 : train.last]
        path_returns = np.diff(np.log(env.market.closes), axis=0)
        distance = np.abs(path_returns[:, None, :] - pool[None, :, :]).max(axis=2).min(axis=1)
        assert distance.max() < 1e-9
    validation = PortfolioEnv(config.model_copy(update={"split": "validation"}))
    assert validation.path_kind == "split" and validation.market.source == str(csv)

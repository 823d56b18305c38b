"""envs.splits: train / validation / test splits that cover every return day once, and walk-forward folds."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError, DataError
from envs.splits import split_market, walk_forward_folds

# -- splits ----------------------------------------------------------------------------------------------------------


@given(
    train_end=st.floats(0.2, 0.6),
    validation_gap=st.floats(0.05, 0.3),
    warmup=st.integers(0, 250),
)
def test_splits_are_contiguous_and_cover_every_return_day_once(tiny, train_end, validation_gap, warmup):
    splits = split_market(
        tiny.market, train_end=train_end, validation_end=train_end + validation_gap, warmup_days=warmup
    )
    train, validation, test = splits["train"], splits["validation"], splits["test"]

    assert train.first == warmup + 1  # the first decision (day warmup) already has a full window
    assert validation.first == train.last + 1
    assert test.first == validation.last + 1
    assert test.last == tiny.market.n_days - 1
    assert min(s.n_days for s in (train, validation, test)) >= 1
    assert train.n_days + validation.n_days + test.n_days == tiny.market.n_days - 1 - warmup
    assert (splits["all"].first, splits["all"].last) == (train.first, test.last)


def test_fraction_boundaries_split_the_usable_days(tiny):
    splits = split_market(tiny.market, train_end=0.5, validation_end=0.75, warmup_days=8)

    usable = tiny.market.n_days - 1 - 8  # 1000 return days
    assert (splits["train"].n_days, splits["validation"].n_days, splits["test"].n_days) == (
        usable // 2,
        usable // 4,
        usable // 4,
    )


def test_date_boundaries_end_splits_on_the_last_day_on_or_before_them(tiny):
    dates = tiny.market.dates
    splits = split_market(tiny.market, train_end="2001-06-30", validation_end="2002-12-31", warmup_days=20)

    assert dates[splits["train"].last] == np.datetime64("2001-06-29")  # 30 June 2001 is a Saturday
    assert dates[splits["validation"].first] == np.datetime64("2001-07-02")
    assert dates[splits["validation"].last] == np.datetime64("2002-12-31")
    assert dates[splits["test"].first] == np.datetime64("2003-01-01")


@pytest.mark.parametrize(
    ("train_end", "validation_end", "message"),
    [
        (0.8, 0.6, "train_end < validation_end"),
        (0.5, 0.5, "train_end < validation_end"),
        (0.0, 0.5, "train_end: fraction 0.0 must lie strictly between 0 and 1"),
        (0.5, 1.0, "validation_end: fraction 1.0 must lie strictly between 0 and 1"),
        ("1999-06-30", 0.8, "1999-06-30 is before the first day"),
        ("2000-01-05", 0.8, "warm-up < train_end"),  # train would end inside the warm-up
        (0.5, "2010-01-01", "validation_end < last day"),  # no test days left
    ],
)
def test_impossible_split_boundaries_are_config_errors(tiny, train_end, validation_end, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        split_market(tiny.market, train_end=train_end, validation_end=validation_end, warmup_days=20)


def test_warmup_longer_than_the_data_is_a_data_error(tiny):
    with pytest.raises(DataError, match="leave no trading days after a 1008-day warm-up"):
        split_market(tiny.market, warmup_days=1008)


# -- walk-forward folds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_folds", [1, 2, 5])
def test_walk_forward_test_folds_are_adjacent_and_train_precedes_validation_precedes_test(tiny, n_folds):
    folds = walk_forward_folds(tiny.market, n_folds=n_folds, warmup_days=20, min_train_days=252, validation_days=63)

    assert len(folds) == n_folds
    for fold in folds:
        train, validation, test = fold["train"], fold["validation"], fold["test"]
        assert train.first == 21
        assert train.n_days >= 252 and validation.n_days == 63 and test.n_days >= 20
        assert train.last + 1 == validation.first and validation.last + 1 == test.first
    for earlier, later in zip(folds, folds[1:]):
        assert later["test"].first == earlier["test"].last + 1
        assert later["train"].last > earlier["train"].last  # the training window expands
    assert folds[0]["test"].first == 21 + 252 + 63
    assert folds[-1]["test"].last == tiny.market.n_days - 1


def test_walk_forward_needs_at_least_one_fold(tiny):
    with pytest.raises(ConfigError, match="n_folds: 0 must be at least 1"):
        walk_forward_folds(tiny.market, n_folds=0)


def test_walk_forward_rejects_folds_too_short_to_test(tiny):
    with pytest.raises(DataError, match="too few for 40 walk-forward folds"):
        walk_forward_folds(tiny.market, n_folds=40, warmup_days=20, min_train_days=252, validation_days=63)

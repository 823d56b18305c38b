"""Splits by date: train / validation / test (and ``all``), and expanding walk-forward folds.

A split is a contiguous range of *return days*: the return from day t-1 to day t belongs to the split that contains
day t. Every daily return therefore belongs to exactly one split, and the decision for that return is taken at the
close of t-1 using prices up to t-1 only (which may lie in the previous split: that is history, not leakage).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError, DataError
from envs.market import MarketData

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Return days ``first .. last`` (inclusive indices into ``MarketData.dates``) of one named split."""

    name: str
    first: int
    last: int

    @property
    def n_days(self) -> int:
        return self.last - self.first + 1


def split_market(
    market: MarketData,
    *,
    train_end: str | float = 0.7,
    validation_end: str | float = 0.85,
    warmup_days: int = 0,
) -> dict[str, Split]:
    """Train / validation / test split by date, plus ``all`` (every return day, for data never used in training).

    :param train_end: last train day, as an ISO date or a fraction of the usable days.
    :param validation_end: last validation day, same form. Test runs to the end of the data.
    :param warmup_days: days reserved at the start for the feature window; the first return day is
        ``warmup_days + 1`` so that the first decision already has a full window.
    :raises ConfigError: when a split would be empty or the boundaries are out of order.
    """
    first = warmup_days + 1
    last = market.n_days - 1
    if first > last:
        raise DataError(
            f"{market.source}: {market.n_days} days leave no trading days after a {warmup_days}-day warm-up"
        )

    def boundary(value: str | float, what: str) -> int:
        if isinstance(value, str):
            return market.date_index(value)
        if not 0.0 < float(value) < 1.0:
            raise ConfigError(f"{what}: fraction {value} must lie strictly between 0 and 1")
        return first - 1 + int(round(float(value) * (last - first + 1)))

    train_last = boundary(train_end, "train_end")
    validation_last = boundary(validation_end, "validation_end")
    if not first <= train_last < validation_last < last:
        raise ConfigError(
            f"{market.source}: splits need warm-up < train_end < validation_end < last day; got train_end "
            f"{train_end!r} (train ends {market.dates[min(max(train_last, 0), last)]}), validation_end {validation_end!r} "
            f"(validation ends {market.dates[min(max(validation_last, 0), last)]}), data {market.dates[0]} .. "
            f"{market.dates[-1]} with {warmup_days} warm-up days"
        )
    return {
        "train": Split("train", first, train_last),
        "validation": Split("validation", train_last + 1, validation_last),
        "test": Split("test", validation_last + 1, last),
        # Every return day: for data no model was fitted or selected on, e.g. fresh synthetic paths.
        "all": Split("all", first, last),
    }


def walk_forward_folds(
    market: MarketData, *, n_folds: int, warmup_days: int = 0, min_train_days: int = 504, validation_days: int = 126
) -> list[dict[str, Split]]:
    """Expanding-window walk-forward folds: fold ``k`` trains on everything before its validation and test windows.

    The test windows of consecutive folds are adjacent and do not overlap, so their out-of-sample series stitch
    into one. Returns ``n_folds`` dicts with ``train``, ``validation`` and ``test`` splits.
    """
    if n_folds < 1:
        raise ConfigError(f"n_folds: {n_folds} must be at least 1")
    first = warmup_days + 1
    last = market.n_days - 1
    usable = last - first + 1 - min_train_days - validation_days
    test_days = usable // n_folds
    if test_days < 20:
        raise DataError(
            f"{market.source}: {market.n_days} days are too few for {n_folds} walk-forward folds with "
            f"{min_train_days} train and {validation_days} validation days (each test fold would have {test_days} days)"
        )
    folds = []
    for k in range(n_folds):
        test_first = first + min_train_days + validation_days + k * test_days
        test_last = last if k == n_folds - 1 else test_first + test_days - 1
        folds.append(
            {
                "train": Split("train", first, test_first - validation_days - 1),
                "validation": Split("validation", test_first - validation_days, test_first - 1),
                "test": Split("test", test_first, test_last),
            }
        )
    return folds

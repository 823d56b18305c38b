"""Market data: the wide CSV contract and its strict validation (splits by date are ``envs.splits``).

CSV format (docs/architecture.md, "Market data"): a ``date`` column (ISO dates, strictly increasing, unique) and one column of positive
close prices per asset. Optional extra columns (a risk-free rate ``rf`` in annual decimals, VIX, ...) are named
explicitly by the caller; every other column is an asset.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketData:
    """Daily closes of ``K`` assets over ``T`` days.

    :param dates: ``(T,)`` ``datetime64[D]``, strictly increasing.
    :param closes: ``(T, K)`` positive close prices.
    :param assets: ``K`` asset names, in column order.
    :param extras: named ``(T,)`` extra series (e.g. ``rf`` in annual decimals).
    :param source: where the data came from (file path or a synthetic description).
    """

    dates: np.ndarray
    closes: np.ndarray
    assets: tuple[str, ...]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "memory"

    def __post_init__(self) -> None:
        if self.closes.ndim != 2 or self.closes.shape != (len(self.dates), len(self.assets)):
            raise DataError(
                f"{self.source}: closes have shape {self.closes.shape}, expected "
                f"(days={len(self.dates)}, assets={len(self.assets)})"
            )

    @property
    def n_days(self) -> int:
        return len(self.dates)

    @property
    def n_assets(self) -> int:
        return len(self.assets)

    def log_returns(self) -> np.ndarray:
        """``(T-1, K)`` daily log returns ``log(close[t] / close[t-1])``."""
        return np.diff(np.log(self.closes), axis=0)

    def date_index(self, date: str | np.datetime64) -> int:
        """Index of the last day on or before ``date``."""
        idx = int(np.searchsorted(self.dates, np.datetime64(date, "D"), side="right")) - 1
        if idx < 0:
            raise ConfigError(f"{self.source}: date {date} is before the first day {self.dates[0]}")
        return idx

    def fingerprint(self) -> str:
        """SHA-256 of dates, closes and asset names: identifies the data a model was trained on."""
        digest = hashlib.sha256()
        digest.update(",".join(self.assets).encode())
        digest.update(self.dates.astype("datetime64[D]").astype(np.int64).tobytes())
        digest.update(np.ascontiguousarray(self.closes, dtype=np.float64).tobytes())
        return digest.hexdigest()

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.closes, columns=list(self.assets))
        for name, values in self.extras.items():
            frame[name] = values
        frame.insert(0, "date", pd.to_datetime(self.dates).strftime("%Y-%m-%d"))
        return frame

    def to_csv(self, path: str | Path) -> None:
        """Write the wide CSV format (docs/architecture.md, "Market data")."""
        self.to_frame().to_csv(path, index=False, float_format="%.8g")


def load_csv(
    path: str | Path,
    *,
    assets: Sequence[str] | None = None,
    extra_columns: Sequence[str] = (),
    ffill_limit: int = 5,
    min_rows: int = 2,
) -> MarketData:
    """Load and validate a wide price CSV.

    :param path: CSV file with a ``date`` column and one close-price column per asset.
    :param assets: asset columns to use, in this order; default every column that is not ``date`` or an extra.
    :param extra_columns: non-price columns to keep (e.g. ``rf``); they are not validated as prices.
    :param ffill_limit: most consecutive missing prices filled forward from the last close; more is an error.
    :param min_rows: fewest rows accepted, for the file and for every asset's history (callers pass their feature
        window + episode needs).
    :raises DataError: naming file, row (1-based line in the file, header = line 1) and column.
    :raises ConfigError: ``assets`` naming a column more than once.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        # Blank lines are kept (and rejected as a missing date), so row numbers always match the file's lines.
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False)
        # pandas renames a repeated name ('SPY', 'SPY' -> 'SPY', 'SPY.1'), so repeats are checked on the header itself.
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    header_names = pd.Index([str(c).strip() for c in header])

    if "date" not in raw.columns:
        raise DataError(f"{path}: no 'date' column (columns are {list(raw.columns)})")
    duplicated = header_names[header_names.duplicated()].tolist()
    if duplicated:
        raise DataError(f"{path}: duplicate column(s) {duplicated}")
    for name in extra_columns:
        if name not in raw.columns:
            raise DataError(
                f"{path}: configured extra column '{name}' is not in the file (columns are {list(raw.columns)})"
            )
    if assets is None:
        assets = [c for c in raw.columns if c != "date" and c not in extra_columns]
    else:
        repeated = sorted({name for name in assets if list(assets).count(name) > 1})
        if repeated:
            raise ConfigError(f"{path}: configured asset column(s) {repeated} listed more than once (data.assets)")
        for name in assets:
            if name not in raw.columns:
                raise DataError(
                    f"{path}: configured asset column '{name}' is not in the file (columns are {list(raw.columns)})"
                )
    if not assets:
        raise DataError(f"{path}: no asset columns (need 'date' plus at least one price column)")
    if len(raw) < min_rows:
        raise DataError(f"{path}: {len(raw)} rows, need at least {min_rows} (feature window plus trading days)")

    dates = _parse_dates(path, raw["date"])
    closes = np.column_stack([_parse_prices(path, raw[name], name, ffill_limit, min_rows) for name in assets])
    extras = {name: _parse_numeric(path, raw[name], name, ffill_limit, min_rows) for name in extra_columns}
    market = MarketData(dates=dates, closes=closes, assets=tuple(assets), extras=extras, source=str(path))
    log.info("loaded %s: %d days x %d assets (%s .. %s)", path, market.n_days, market.n_assets, dates[0], dates[-1])
    return market


def _line(row: int) -> int:
    """File line of a data row (header is line 1)."""
    return row + 2


def _late_start(missing: np.ndarray, min_rows: int) -> str:
    """What is wrong with a column that has no value on the first day: how much history it has, against the
    ``min_rows`` every column needs, and what would fix it."""
    if missing.all():
        return f"no value on any of the {len(missing)} rows (need at least {min_rows})"
    first = int(np.argmin(missing))
    history = len(missing) - first
    problem = f"missing value on the first day (nothing to fill from): its values start at row {_line(first)}"
    if history < min_rows:
        return f"{problem}, {history} rows of history, need at least {min_rows} (feature window plus trading days)"
    return f"{problem} ({history} rows of history, {min_rows} needed): start the file there or leave the column out"


def _parse_dates(path: Path, column: pd.Series) -> np.ndarray:
    stripped = column.str.strip()
    for row, text in enumerate(stripped):
        if text == "":
            raise DataError(f"{path}: row {_line(row)}, column 'date': missing date")
    # The calendar day is the first ten characters as written: a time or UTC offset after it must not move the
    # close to another day (converting '2020-01-01T00:00+05:00' to UTC would).
    well_formed = stripped.str.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?")
    parsed = pd.to_datetime(stripped.str.slice(0, 10).where(well_formed), format="%Y-%m-%d", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{path}: row {_line(row)}, column 'date': '{stripped.iloc[row]}' is not an ISO date (YYYY-MM-DD)"
        )
    dates = parsed.to_numpy().astype("datetime64[D]")
    steps = np.diff(dates.astype(np.int64))
    if steps.size and (steps <= 0).any():
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        kind = "duplicate" if steps[row - 1] == 0 else "out of order"
        raise DataError(
            f"{path}: row {_line(row)}, column 'date': {kind} date {dates[row]} "
            f"(previous row has {dates[row - 1]}); dates must be unique and strictly increasing"
        )
    return dates


def _parse_numeric(path: Path, column: pd.Series, name: str, ffill_limit: int, min_rows: int) -> np.ndarray:
    text = column.str.strip()
    values = pd.to_numeric(text.where(text != ""), errors="coerce")
    missing_markers = text.str.lower().isin(["", "nan", "na", "null", "none"])
    non_numeric = values.isna() & ~missing_markers
    if non_numeric.any():
        row = int(np.flatnonzero(non_numeric.to_numpy())[0])
        raise DataError(f"{path}: row {_line(row)}, column '{name}': '{text.iloc[row]}' is not a number")
    array = values.to_numpy(dtype=np.float64)
    infinite = np.isinf(array)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise DataError(f"{path}: row {_line(row)}, column '{name}': infinite value")
    return _forward_fill(path, array, name, ffill_limit, min_rows)


def _parse_prices(path: Path, column: pd.Series, name: str, ffill_limit: int, min_rows: int) -> np.ndarray:
    prices = _parse_numeric(path, column, name, ffill_limit, min_rows)
    non_positive = prices <= 0
    if non_positive.any():
        row = int(np.flatnonzero(non_positive)[0])
        raise DataError(f"{path}: row {_line(row)}, column '{name}': price {prices[row]:g} is not positive")
    return prices


def _forward_fill(path: Path, values: np.ndarray, name: str, ffill_limit: int, min_rows: int) -> np.ndarray:
    missing = np.isnan(values)
    if not missing.any():
        return values
    if missing[0]:
        raise DataError(f"{path}: row {_line(0)}, column '{name}': {_late_start(missing, min_rows)}")
    # Length of each run of consecutive missing values, checked against the limit.
    run = 0
    for row in range(len(values)):
        run = run + 1 if missing[row] else 0
        if run > ffill_limit:
            start = row - run + 1
            raise DataError(
                f"{path}: row {_line(start)}, column '{name}': {run}+ consecutive missing values from here, "
                f"more than the forward-fill limit of {ffill_limit}"
            )
    filled = pd.Series(values).ffill().to_numpy()
    log.warning("%s: column '%s': forward-filled %d missing value(s)", path, name, int(missing.sum()))
    return filled

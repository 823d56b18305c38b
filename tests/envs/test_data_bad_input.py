"""Bad input in wide universes: repeated asset names (in the file or the config) and an asset whose history starts
too late for the env's warm-up are rejected with messages naming the file, the assets and the numbers."""

from __future__ import annotations

import re

import pytest

from core.errors import ConfigError, DataError
from envs.config import DataConfig, EnvConfig
from envs.data import min_rows, validate
from envs.market import load_csv
from envs.sources import load_market, with_cash
from envs.synthetic import default_market


@pytest.fixture
def wide_rows():
    """Cells of a 200-asset CSV of 301 days of the factor market: header first."""
    market, _, _ = default_market(seed=1, years=300 / 252, n_assets=200)
    frame = market.to_frame()
    header = list(frame.columns)
    return [header] + [[f"{v:.8g}" if isinstance(v, float) else str(v) for v in row] for row in frame.to_numpy()]


def write(tmp_path, rows, name="wide.csv"):
    path = tmp_path / name
    path.write_text("\n".join(",".join(row) for row in rows) + "\n")
    return path


def test_repeated_names_in_a_wide_header_are_all_named(tmp_path, wide_rows):
    wide_rows[0][10], wide_rows[0][150] = "STOCK", "GOLD2"
    path = write(tmp_path, wide_rows)

    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: duplicate column\(s\) \['STOCK', 'GOLD2'\]"):
        load_market(DataConfig(path=str(path)))


def test_an_asset_configured_twice_is_a_config_error_naming_it_and_the_file(write_csv):
    path = write_csv()

    with pytest.raises(
        ConfigError, match=rf"{re.escape(str(path))}: configured asset column\(s\) \['SPY'\] listed more than once"
    ):
        load_market(DataConfig(path=str(path), assets=("SPY", "TLT", "SPY"), extra_columns=("rf",)))


def test_an_asset_whose_history_starts_too_late_for_the_warmup_names_its_rows_and_the_need(tmp_path, wide_rows):
    for row in wide_rows[1:261]:  # GOLD3 (column 11) trades only on the last 41 of 301 rows
        row[11] = ""
    path = write(tmp_path, wide_rows)
    config = EnvConfig()

    assert min_rows(config) == 64  # the 60-day volatility window plus a few trading days
    message = (
        rf"{re.escape(str(path))}: row 2, column 'GOLD3': missing value on the first day .*its values start at row "
        r"262, 41 rows of history, need at least 64 \(feature window"
    )
    with pytest.raises(DataError, match=message):
        validate(str(path), config)


def test_a_late_start_with_history_enough_says_where_the_file_could_start(tmp_path, wide_rows):
    for row in wide_rows[1:101]:
        row[3] = "nan"
    path = write(tmp_path, wide_rows)

    with pytest.raises(DataError, match=r"column 'GOLD': .*start at row 102 \(201 rows of history, 64 needed\)"):
        load_csv(path, min_rows=64)


def test_a_column_with_no_value_at_all_says_so(write_csv, price_rows):
    for row in price_rows[1:]:
        row[2] = ""
    path = write_csv(price_rows)

    with pytest.raises(DataError, match=r"column 'TLT': no value on any of the 8 rows \(need at least 2\)"):
        load_csv(path, extra_columns=["rf"])


def test_cash_added_to_a_market_that_has_a_cash_column_is_rejected(write_csv, price_rows):
    price_rows[0][2] = "CASH"
    market = load_csv(write_csv(price_rows), extra_columns=["rf"])

    with pytest.raises(DataError, match=r"prices\.csv: asset column 'CASH' already exists and data\.cash adds one"):
        with_cash(market, "rf")

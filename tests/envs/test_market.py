"""envs.market: the CSV contract (every rejection names file, line and column) and MarketData."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.errors import ConfigError, DataError
from envs.market import MarketData, load_csv


def names(path, row: int, column: str, what: str) -> str:
    """Regex for a DataError message naming the file, the 1-based file line and the column, then the problem."""
    return rf"{re.escape(str(path))}: row {row}, column '{re.escape(column)}': .*{what}"


# -- loading a valid file ------------------------------------------------------------------------------------------


def test_valid_csv_loads_dates_prices_and_extras(write_csv, price_rows):
    market = load_csv(write_csv(), extra_columns=["rf"])

    assert market.assets == ("SPY", "TLT")
    assert market.dates.dtype == np.dtype("datetime64[D]")
    assert market.dates[0] == np.datetime64("2024-01-02") and market.dates[-1] == np.datetime64("2024-01-11")
    np.testing.assert_array_equal(market.closes[:, 0], [float(row[1]) for row in price_rows[1:]])
    np.testing.assert_array_equal(market.extras["rf"], [float(row[3]) for row in price_rows[1:]])


def test_every_column_but_date_and_extras_is_an_asset(write_csv):
    market = load_csv(write_csv())

    assert market.assets == ("SPY", "TLT", "rf")
    assert market.extras == {}


def test_configured_assets_select_and_order_columns(write_csv):
    market = load_csv(write_csv(), assets=["TLT", "SPY"], extra_columns=["rf"])

    assert market.assets == ("TLT", "SPY")
    assert market.closes[0].tolist() == [98.2, 470.5]


def test_spaces_around_header_names_and_cells_are_ignored(write_csv, price_rows):
    price_rows[0] = ["date", " SPY", " TLT ", "rf"]
    price_rows[2][1] = "  468.8"

    market = load_csv(write_csv(price_rows), extra_columns=["rf"])

    assert market.assets == ("SPY", "TLT")
    assert market.closes[1, 0] == 468.8


def test_extra_columns_are_numbers_but_not_prices(write_csv, price_rows):
    price_rows[3][3] = "-0.001"  # negative rates happen; only prices must be positive

    market = load_csv(write_csv(price_rows), extra_columns=["rf"])

    assert market.extras["rf"][2] == -0.001


def test_gap_within_ffill_limit_is_forward_filled(write_csv, price_rows):
    price_rows[3][1] = ""
    price_rows[4][1] = "NaN"

    market = load_csv(write_csv(price_rows), extra_columns=["rf"], ffill_limit=2)

    assert market.closes[2, 0] == market.closes[1, 0] == 468.8
    assert market.closes[3, 0] == 468.8
    assert market.closes[4, 0] == 474.6


def test_written_csv_loads_back_identically(tiny, tmp_path):
    path = tmp_path / "market.csv"
    tiny.market.to_csv(path)

    loaded = load_csv(path)

    assert loaded.assets == tiny.market.assets
    np.testing.assert_array_equal(loaded.dates, tiny.market.dates)
    np.testing.assert_allclose(loaded.closes, tiny.market.closes, rtol=1e-7)


# -- every rejection names the file, the line (header = line 1) and the column ---------------------------------------


def test_missing_file_is_rejected_naming_it(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: no such file"):
        load_csv(path)


def test_file_without_date_column_is_rejected(write_csv, price_rows):
    price_rows[0][0] = "day"
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: no 'date' column .*'day'"):
        load_csv(path)


def test_missing_date_is_rejected(write_csv, price_rows):
    price_rows[3][0] = ""
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 4, "date", "missing date")):
        load_csv(path)


@pytest.mark.parametrize("text", ["2024-02-30", "04/01/2024", "yesterday"])
def test_unparsable_date_is_rejected(write_csv, price_rows, text):
    price_rows[5][0] = text
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 6, "date", f"'{re.escape(text)}' is not an ISO date")):
        load_csv(path)


def test_duplicate_date_is_rejected(write_csv, price_rows):
    price_rows[5][0] = price_rows[4][0]
    path = write_csv(price_rows)
    with pytest.raises(
        DataError, match=names(path, 6, "date", r"duplicate date 2024-01-05 \(previous row has 2024-01-05\)")
    ):
        load_csv(path)


def test_unsorted_date_is_rejected(write_csv, price_rows):
    price_rows[4][0], price_rows[5][0] = price_rows[5][0], price_rows[4][0]
    path = write_csv(price_rows)
    with pytest.raises(
        DataError, match=names(path, 6, "date", r"out of order date 2024-01-05 \(previous row has 2024-01-08\)")
    ):
        load_csv(path)


def test_non_numeric_price_is_rejected(write_csv, price_rows):
    price_rows[6][2] = "12.5.1"
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 7, "TLT", "'12\\.5\\.1' is not a number")):
        load_csv(path)


def test_non_numeric_extra_is_rejected(write_csv, price_rows):
    price_rows[2][3] = "n/a%"
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 3, "rf", "is not a number")):
        load_csv(path, extra_columns=["rf"])


def test_gap_beyond_ffill_limit_is_rejected_at_its_first_line(write_csv, price_rows):
    for row in (3, 4, 5):
        price_rows[row][1] = ""
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 4, "SPY", "more than the forward-fill limit of 2")):
        load_csv(path, extra_columns=["rf"], ffill_limit=2)


def test_any_gap_is_rejected_when_ffill_limit_is_zero(write_csv, price_rows):
    price_rows[7][2] = "nan"
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 8, "TLT", "forward-fill limit of 0")):
        load_csv(path, extra_columns=["rf"], ffill_limit=0)


def test_missing_value_on_first_row_is_rejected(write_csv, price_rows):
    price_rows[1][2] = ""
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 2, "TLT", "first day")):
        load_csv(path, extra_columns=["rf"])


@pytest.mark.parametrize("price", ["0", "0.0", "-3.5"])
def test_non_positive_price_is_rejected(write_csv, price_rows, price):
    price_rows[7][1] = price
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 8, "SPY", f"price {float(price):g} is not positive")):
        load_csv(path, extra_columns=["rf"])


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400"])
def test_infinite_value_is_rejected(write_csv, price_rows, value):
    price_rows[2][2] = value
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=names(path, 3, "TLT", "infinite value")):
        load_csv(path, extra_columns=["rf"])


def test_too_few_rows_are_rejected(write_csv):
    path = write_csv()
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: 8 rows, need at least 9"):
        load_csv(path, extra_columns=["rf"], min_rows=9)
    assert load_csv(path, extra_columns=["rf"], min_rows=8).n_days == 8


def test_unknown_configured_asset_column_is_rejected(write_csv):
    path = write_csv()
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: configured asset column 'QQQ' is not in the file"):
        load_csv(path, assets=["SPY", "QQQ"], extra_columns=["rf"])


def test_unknown_configured_extra_column_is_rejected(write_csv):
    path = write_csv()
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: configured extra column 'vix' is not in the file"):
        load_csv(path, extra_columns=["rf", "vix"])


def test_file_without_asset_columns_is_rejected(write_csv, price_rows):
    rows = [[row[0], row[3]] for row in price_rows]
    path = write_csv(rows)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: no asset columns"):
        load_csv(path, extra_columns=["rf"])


def test_repeated_column_name_is_rejected(write_csv, price_rows):
    price_rows[0][2] = "SPY"
    path = write_csv(price_rows)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: duplicate column\(s\) \['SPY'\]"):
        load_csv(path, extra_columns=["rf"])


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: not a readable CSV"):
        load_csv(path)


# -- MarketData ------------------------------------------------------------------------------------------------------


def test_market_data_rejects_closes_that_do_not_match_dates_and_assets(tiny):
    with pytest.raises(DataError, match=r"closes have shape \(1009, 4\), expected \(days=1009, assets=3\)"):
        MarketData(dates=tiny.market.dates, closes=np.array(tiny.market.closes), assets=("A", "B", "C"))


def test_log_returns_are_log_price_ratios(tiny):
    closes = tiny.market.closes
    log_returns = tiny.market.log_returns()

    assert log_returns.shape == (tiny.market.n_days - 1, tiny.market.n_assets)
    np.testing.assert_allclose(log_returns[41], np.log(closes[42] / closes[41]))


def test_date_index_is_the_last_day_on_or_before_the_date(tiny):
    market = tiny.market  # business days from Monday 2000-01-03

    assert market.date_index("2000-01-03") == 0
    assert market.date_index("2000-01-07") == 4
    assert market.date_index("2000-01-09") == 4  # Sunday -> Friday
    assert market.date_index("2099-01-01") == market.n_days - 1
    with pytest.raises(ConfigError, match="1999-12-31 is before the first day 2000-01-03"):
        market.date_index("1999-12-31")


def test_fingerprint_identifies_the_data(tiny):
    market = tiny.market
    same = MarketData(dates=market.dates.copy(), closes=np.array(market.closes), assets=market.assets)
    closes = np.array(market.closes)
    closes[500, 2] *= 1.0000001
    nudged = MarketData(dates=market.dates, closes=closes, assets=market.assets)
    renamed = MarketData(dates=market.dates, closes=market.closes, assets=("A", "B", "C", "D"))

    assert same.fingerprint() == market.fingerprint()
    assert nudged.fingerprint() != market.fingerprint()
    assert renamed.fingerprint() != market.fingerprint()


def test_blank_line_in_the_middle_is_reported_at_its_own_line(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("date,A\n2020-01-01,1\n2020-01-02,2\n\n2020-01-06,3\n")
    with pytest.raises(DataError, match=r"row 4, column 'date': missing date"):
        load_csv(path)


def test_dates_with_times_or_offsets_keep_their_written_calendar_day(tmp_path):
    path = tmp_path / "tz.csv"
    path.write_text("date,A\n2020-01-01T00:00+05:00,1\n2020-01-02 16:00:00,2\n2020-01-03T09:00-04:00,3\n")
    market = load_csv(path)
    assert [str(d) for d in market.dates] == ["2020-01-01", "2020-01-02", "2020-01-03"]


def test_mixed_timezone_dates_do_not_crash_the_loader(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("date,A\n2020-01-01T00:00+05:00,1\n2020-01-02T00:00Z,2\nJan 3 2020,3\n")
    with pytest.raises(DataError, match=r"row 4, column 'date': 'Jan 3 2020' is not an ISO date"):
        load_csv(path)

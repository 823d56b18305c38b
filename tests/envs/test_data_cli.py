"""envs.data: loading what a DataConfig names, the CASH asset, yfinance conversion and the ``python -m envs.data`` CLI."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from core.constants import TRADING_DAYS_PER_YEAR
from core.errors import DataError
from envs.config import DataConfig
from envs.data import main, market_summary
from envs.fetch import frame_from_download
from envs.market import MarketData, load_csv
from envs.sources import CASH, load_market, with_cash

# -- CLI ---------------------------------------------------------------------------------------------------------

TINY_WINDOW = "window_days: 0\nvol_window_days: 2\ndata: {train_end: 0.4, validation_end: 0.7}\n"


@pytest.fixture
def tiny_env_yaml(tmp_path):
    """An env config whose feature window (2 days) and splits fit the 8-row ``price_rows`` file."""
    path = tmp_path / "env.yaml"
    path.write_text(TINY_WINDOW)
    return str(path)


def test_validate_prints_a_json_summary_of_a_good_file(write_csv, tiny_env_yaml, capsys):
    path = write_csv()

    assert main(["validate", str(path), "--extra", "rf", "--env-config", tiny_env_yaml]) == 0

    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["rows"] == 8
    assert (summary["first_date"], summary["last_date"]) == ("2024-01-02", "2024-01-11")
    assert list(summary["assets"]) == ["SPY", "TLT"]
    assert summary["extras"] == ["rf"]
    assert summary["warmup_days"] == 2
    assert summary["splits"]["train"]["first"] == "2024-01-05" and summary["splits"]["test"]["last"] == "2024-01-11"
    assert "error:" not in captured.err


def test_validate_rejects_a_file_too_short_for_the_configured_window_with_trainings_message(write_csv, capsys):
    """configs/env.yaml's 130-day regime window needs 134 rows; training says exactly this about an 8-row file."""
    from envs.config import ENV_YAML, load_env_config, with_data
    from envs.portfolio_env import PortfolioEnv

    path = write_csv()
    with pytest.raises(DataError) as training:
        PortfolioEnv(with_data(load_env_config(), path))

    assert main(["validate", str(path), "--extra", "rf"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {training.value}\n"
    assert "8 rows, need at least 134" in err and str(ENV_YAML).endswith("configs/env.yaml")


def test_validate_rejects_splits_that_do_not_fit_the_file(write_csv, tmp_path, capsys):
    config = tmp_path / "env.yaml"
    config.write_text(TINY_WINDOW.replace("train_end: 0.4", "train_end: '2030-01-02'"))

    assert main(["validate", str(write_csv()), "--extra", "rf", "--env-config", str(config)]) == 2  # a config error
    assert "2030-01-02" in capsys.readouterr().err


def test_validate_exits_1_with_an_error_naming_file_row_and_column_on_a_bad_file(
    write_csv, price_rows, tiny_env_yaml, capsys
):
    price_rows[4][2] = "-1"
    path = write_csv(price_rows)

    assert main(["validate", str(path), "--extra", "rf", "--env-config", tiny_env_yaml]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert re.search(rf"{re.escape(str(path))}: row 5, column 'TLT': price -1 is not positive", captured.err)


def test_validate_respects_the_ffill_limit_option(write_csv, price_rows, tiny_env_yaml, capsys):
    price_rows[3][1] = price_rows[4][1] = ""
    path = write_csv(price_rows)

    assert main(["validate", str(path), "--extra", "rf", "--ffill-limit", "1", "--env-config", tiny_env_yaml]) == 1
    assert "forward-fill limit of 1" in capsys.readouterr().err
    assert main(["validate", str(path), "--extra", "rf", "--ffill-limit", "2", "--env-config", tiny_env_yaml]) == 0


def test_validate_reports_a_missing_file_and_a_bad_env_config(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.csv")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'nope.csv'}: no such file")
    assert main(["validate", str(tmp_path / "nope.csv"), "--env-config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such config file" in capsys.readouterr().err


def test_fetch_on_an_offline_machine_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    """No route to Yahoo (as on this project's CI machines): one line, before yfinance is even imported."""
    import socket

    def unreachable(address, timeout=None):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert main(["fetch", "--tickers", "SPY", "TLT", "--out", str(tmp_path / "etf.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: fetch: cannot reach query2.finance.yahoo.com:443")
    assert "Temporary failure in name resolution" in err and "network is unreachable" in err
    assert not (tmp_path / "etf.csv").exists()


def test_summary_reports_annualised_log_return_and_volatility(write_csv):
    market = load_csv(write_csv(), extra_columns=["rf"])

    summary = market_summary(market)

    spy = np.log(market.closes[:, 0])
    log_returns = np.diff(spy)
    assert summary["assets"]["SPY"]["annual_log_return"] == pytest.approx(
        (spy[-1] - spy[0]) / 7 * TRADING_DAYS_PER_YEAR
    )
    assert summary["assets"]["SPY"]["annual_volatility"] == pytest.approx(log_returns.std(ddof=1) * np.sqrt(252))


# -- yfinance conversion ---------------------------------------------------------------------------------------------


def yfinance_frame(tickers: list[str], index: pd.DatetimeIndex, closes: np.ndarray) -> pd.DataFrame:
    """What ``yfinance.download(tickers, auto_adjust=True)`` returns: columns ``(field, ticker)``, a ``Date`` index."""
    columns = pd.MultiIndex.from_product(
        [["Close", "High", "Low", "Open", "Volume"], tickers], names=["Price", "Ticker"]
    )
    values = np.hstack([closes, closes * 1.01, closes * 0.99, closes, np.full_like(closes, 1e6)])
    return pd.DataFrame(values, index=pd.DatetimeIndex(index, name="Date"), columns=columns)


@pytest.fixture
def download() -> pd.DataFrame:
    """BTC trades every day, SPY on weekdays; Monday 2024-01-15 is a US holiday, so SPY has no price then."""
    index = pd.date_range("2024-01-10", "2024-01-22", freq="D")
    btc = 42_000.0 + 100.0 * np.arange(len(index))
    spy = 470.0 + np.arange(len(index), dtype=float)
    spy[(index.dayofweek >= 5) | (index == "2024-01-15")] = np.nan
    return yfinance_frame(["BTC-USD", "SPY"], index, np.column_stack([btc, spy]))


def test_downloaded_frame_becomes_a_csv_the_loader_accepts(download, tmp_path):
    frame = frame_from_download(download)
    path = tmp_path / "download.csv"
    frame.to_csv(path, index=False)

    market = load_csv(path, ffill_limit=3)

    assert list(frame.columns) == ["date", "BTC-USD", "SPY"]
    assert market.assets == ("BTC-USD", "SPY")
    assert market.n_days == 13 and market.dates[0] == np.datetime64("2024-01-10")
    np.testing.assert_array_equal(market.closes[:, 0], download[("Close", "BTC-USD")].to_numpy())
    # Weekend plus holiday (13-15 January) is forward-filled from Friday's close.
    friday = download.loc["2024-01-12", ("Close", "SPY")]
    np.testing.assert_array_equal(market.closes[3:6, 1], friday)


def test_days_on_which_no_ticker_traded_are_dropped(download):
    download.loc["2024-01-16", ("Close", slice(None))] = np.nan

    frame = frame_from_download(download)

    assert "2024-01-16" not in set(frame["date"]) and len(frame) == 12


def test_download_starts_on_the_first_day_every_ticker_has_a_price(download, tmp_path):
    # A Saturday start: BTC has prices before SPY's first close, which nothing could be forward-filled from.
    download = download.loc["2024-01-13":]
    frame = frame_from_download(download)
    path = tmp_path / "download.csv"
    frame.to_csv(path, index=False)

    market = load_csv(path)

    assert frame["date"].iloc[0] == "2024-01-16"
    assert market.dates[0] == np.datetime64("2024-01-16")


def test_ticker_major_and_timezone_aware_downloads_convert_the_same(download):
    expected = frame_from_download(download)
    ticker_major = download.swaplevel(axis=1)
    localized = download.tz_localize("America/New_York")

    pd.testing.assert_frame_equal(frame_from_download(ticker_major), expected)
    pd.testing.assert_frame_equal(frame_from_download(localized), expected)


def test_single_ticker_flat_download_converts(download):
    flat = download.xs("SPY", axis=1, level="Ticker").dropna()

    frame = frame_from_download(flat)

    assert list(frame.columns) == ["date", "Close"]
    assert frame["date"].iloc[0] == "2024-01-10"


def test_download_without_close_prices_is_rejected(download):
    with pytest.raises(DataError, match="no 'Close' column"):
        frame_from_download(download.xs("SPY", axis=1, level="Ticker").drop(columns="Close"))
    with pytest.raises(DataError, match="no prices"):
        frame_from_download(download.iloc[:0])


def test_download_where_one_ticker_never_traded_is_rejected(download):
    download[("Close", "SPY")] = np.nan

    with pytest.raises(DataError, match="SPY"):
        frame_from_download(download)


# -- load_market and the CASH asset ----------------------------------------------------------------------------------


def test_null_path_loads_the_builtin_synthetic_market():
    market = load_market(DataConfig(synthetic_years=3, synthetic_assets=6, synthetic_seed=2))

    assert market.n_days == 3 * 252 + 1
    assert market.n_assets == 6
    assert market.source == "synthetic(seed=2)"


def test_load_market_reads_the_configured_csv_and_rereads_it_when_it_changes(write_csv, price_rows):
    path = write_csv()
    config = DataConfig(path=str(path), extra_columns=("rf",), rf_column="rf")

    assert load_market(config).closes[0, 0] == 470.5

    price_rows[1][1] = "471.0"
    write_csv(price_rows)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later edit, even on coarse clocks
    assert load_market(config).closes[0, 0] == 471.0


def test_load_market_rejects_a_missing_file_and_too_short_data(tmp_path, write_csv):
    with pytest.raises(DataError, match="nope.csv: no such file"):
        load_market(DataConfig(path=str(tmp_path / "nope.csv")))
    with pytest.raises(DataError, match="8 rows, need at least 30"):
        load_market(DataConfig(path=str(write_csv()), extra_columns=("rf",)), min_rows=30)


def test_cash_without_a_rate_is_a_constant_price(tiny):
    market = with_cash(tiny.market, None)

    assert market.assets == tiny.market.assets + (CASH,)
    np.testing.assert_array_equal(market.closes[:, -1], 1.0)
    np.testing.assert_array_equal(market.closes[:, :-1], tiny.market.closes)


def test_cash_accrues_the_annual_risk_free_rate_daily(write_csv):
    market = load_market(DataConfig(path=str(write_csv()), extra_columns=("rf",), rf_column="rf", cash=True))

    rf = market.extras["rf"]
    cash = market.closes[:, -1]
    assert market.assets[-1] == CASH and cash[0] == 1.0
    # Holding cash from day t to t+1 earns the rate known at t.
    np.testing.assert_allclose(cash[1:] / cash[:-1], 1.0 + rf[:-1] / TRADING_DAYS_PER_YEAR, rtol=1e-14)


def test_with_cash_keeps_dates_and_extras(tiny):
    rf = np.full(tiny.market.n_days, 0.03)
    market = MarketData(tiny.market.dates, tiny.market.closes, tiny.market.assets, extras={"rf": rf})

    cash_market = with_cash(market, "rf")

    np.testing.assert_array_equal(cash_market.dates, market.dates)
    assert cash_market.extras["rf"] is rf
    assert cash_market.closes[-1, -1] == pytest.approx((1 + 0.03 / 252) ** (market.n_days - 1))


# -- real prices built in --------------------------------------------------------------------------------------------


def test_sample_writes_real_prices_that_validate(tmp_path, capsys):
    out = tmp_path / "etf.csv"
    assert main(["sample", "etf-factors", "--out", str(out)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["assets"] == ["MTUM", "QUAL", "SIZE", "USMV", "VLUE"] and written["rows"] == 2264
    assert (written["first_date"], written["last_date"]) == ("2014-01-02", "2022-12-28")
    assert main(["validate", str(out)]) == 0  # with configs/env.yaml's window and splits, as training would load it
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["test"]["last"] == "2022-12-28"


def test_sample_takes_an_asset_subset_in_order_and_names_unknown_ones(tmp_path, capsys):
    out = tmp_path / "stocks.csv"
    assert main(["sample", "sp500-stocks", "--out", str(out), "--assets", "XOM", "AAPL", "KO"]) == 0
    assert load_csv(out).assets == ("XOM", "AAPL", "KO")
    capsys.readouterr()
    assert main(["sample", "sp500-stocks", "--out", str(tmp_path / "x.csv"), "--assets", "AAPL", "TSLA"]) == 2
    assert "--assets: ['TSLA'] not in sp500-stocks" in capsys.readouterr().err

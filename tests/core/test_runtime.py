"""core.runtime: the address check before ray.init, and the console filters (no Ray started here)."""

from __future__ import annotations

import logging
import warnings

import pytest

from core.errors import ConfigError
from core.runtime import check_ray_address, quiet_libraries, setup_console


@pytest.mark.parametrize("address", ["http://127.0.0.1:8265", "https://ray.example.com"])
def test_a_dashboard_address_for_ray_init_is_refused_with_the_address_to_use(address):
    with pytest.raises(
        ConfigError, match=r"is a dashboard \(Jobs API\) address, for `ray job submit`.*RAY_ADDRESS=auto"
    ):
        check_ray_address(address)


@pytest.mark.parametrize("address", [None, "", "auto", "127.0.0.1:6379", "ray://head:10001"])
def test_gcs_and_client_addresses_pass(address):
    check_ray_address(address)


def test_known_library_notices_are_dropped_and_other_warnings_kept(caplog):
    quiet_libraries()
    caplog.set_level(logging.WARNING)
    logging.getLogger("ray.rllib.algorithms.algorithm_config").warning("You are running PPO on the new API stack! ...")
    logging.getLogger("ray._common.deprecation").warning(
        "DeprecationWarning: `RLModule(config=[RLModuleConfig object])` ..."
    )
    logging.getLogger("ray.rllib.algorithms.algorithm_config").warning(
        "train_batch_size is smaller than minibatch_size"
    )
    assert [r.getMessage() for r in caplog.records] == ["train_batch_size is smaller than minibatch_size"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_libraries()
        warnings.warn(
            "\x1b[33mWARN: Overriding environment rllib-single-agent-env-v0 already in registry.\x1b[0m", stacklevel=1
        )
        warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_the_log_file_gets_every_line_and_the_console_only_info_and_above(tmp_path, capsys):
    setup_console(tmp_path / "run.log")
    progress = logging.getLogger("training.progress")
    progress.debug("iteration 2 (throttled)")
    progress.info("iteration 3")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert capsys.readouterr().err == "iteration 3\n"
    text = (tmp_path / "run.log").read_text()
    assert "iteration 2 (throttled)" in text and "INFO training.progress: iteration 3" in text
    setup_console(tmp_path / "other.log")  # a new run's file replaces the last one's
    progress.info("iteration 4")
    assert "iteration 4" not in (tmp_path / "run.log").read_text()

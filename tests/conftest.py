"""Shared fixtures: a tiny synthetic market (session-scoped), a small env config, and a writer of small CSV files.

Nothing here starts Ray. Hypothesis runs a modest number of examples without a deadline, so the whole suite stays
fast on a 2-CPU laptop while the property tests still explore the input space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from envs.config import EnvConfig
from envs.market import MarketData
from envs.synthetic import MarketParams, default_market

REPO_ROOT = Path(__file__).resolve().parent.parent

settings.register_profile(
    "suite", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("suite")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout (configs/, data/, demo.py live here)."""
    return REPO_ROOT


class TinyMarket(NamedTuple):
    """The default synthetic law over a few years: market, true parameters and regime path."""

    market: MarketData
    params: MarketParams
    regimes: np.ndarray


@pytest.fixture(scope="session")
def tiny() -> TinyMarket:
    """4 years (1,009 days) of the default 4-asset, 3-regime market; arrays are read-only so no test can alter them."""
    market, params, regimes = default_market(seed=7, years=4)
    market.closes.flags.writeable = False
    regimes.flags.writeable = False
    return TinyMarket(market, params, regimes)


@pytest.fixture(scope="session")
def small_config() -> EnvConfig:
    """An env config sized for the tiny market: 10-day window, 20-day volatility, 40-day episodes.

    Frozen, so session scope is safe; tests derive variants with ``small_config.model_copy(update={...})``.
    """
    return EnvConfig(window_days=10, vol_window_days=20, episode_days=40, cost_bps=10.0)


@pytest.fixture(scope="session")
def perturb_after() -> Callable[[MarketData, int, int], MarketData]:
    """``perturb_after(market, day, seed)``: a copy whose closes after ``day`` are multiplied by random factors.

    Factors lie in ``[0.5, 1.5)``, one per later day and asset, so every later price (and return) changes.
    """

    def perturb(market: MarketData, day: int, seed: int) -> MarketData:
        rng = np.random.default_rng(seed)
        closes = np.array(market.closes)
        closes[day + 1 :] *= rng.uniform(0.5, 1.5, size=closes[day + 1 :].shape)
        return MarketData(dates=market.dates, closes=closes, assets=market.assets, extras=dict(market.extras), source="perturbed")

    return perturb


@pytest.fixture
def price_rows() -> list[list[str]]:
    """Cells of a small valid CSV: header ``date,SPY,TLT,rf`` then 8 business days. ``rows[i]`` is file line ``i + 1``."""
    dates = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11"]
    spy = ["470.5", "468.8", "467.3", "467.9", "474.6", "473.9", "476.6", "477.5"]
    tlt = ["98.2", "97.9", "96.5", "95.9", "96.6", "96.2", "95.4", "96.9"]
    rf = ["0.052", "0.052", "0.0521", "0.0521", "0.052", "0.0519", "0.0519", "0.052"]
    return [["date", "SPY", "TLT", "rf"]] + [list(row) for row in zip(dates, spy, tlt, rf)]


@pytest.fixture
def write_csv(tmp_path: Path, price_rows: list[list[str]]) -> Callable[..., Path]:
    """``write_csv(rows=None, name="prices.csv") -> Path``: write rows (default: ``price_rows``) as a CSV in ``tmp_path``."""

    def write(rows: list[list[str]] | None = None, name: str = "prices.csv") -> Path:
        path = tmp_path / name
        path.write_text("\n".join(",".join(row) for row in (price_rows if rows is None else rows)) + "\n")
        return path

    return write


# -- training fixtures ---------------------------------------------------------------------------------------------

FAST_ENV = {"window_days": 10, "vol_window_days": 20, "episode_days": 100}
FAST_HYPERPARAMETERS = {
    "ppo": {"train_batch_size_per_learner": 500, "minibatch_size": 250, "num_epochs": 2},
    "sac": {"train_batch_size_per_learner": 64, "num_steps_sampled_before_learning_starts": 200},
    "dqn": {"train_batch_size_per_learner": 64, "num_steps_sampled_before_learning_starts": 200},
}


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """A 6-year synthetic market written as a real CSV (+ .params.json), for training runs and CLIs."""
    from envs.synthetic import write_synthetic

    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    write_synthetic(path, seed=3, years=6, n_assets=4, n_regimes=3)
    return path


def fast_overrides(algo: str, data: Path, timesteps: int = 1000, **extra) -> dict:
    """Config overrides that make a training run take seconds: small windows, batches and budgets."""
    return {
        "env": {**FAST_ENV, "data": {"path": str(data)}},
        "hyperparameters": FAST_HYPERPARAMETERS[algo],
        "timesteps": timesteps,
        "model": {"hidden": [16, 16]},
        **extra,
    }


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray instance (2 CPUs, token auth off) for one test module; shut down afterwards."""
    import os

    import ray

    from serving.lifecycle import use_throughput_mode

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    use_throughput_mode()  # Serve tests run the way `python -m serving.app` serves: HAProxy ingress, gRPC between replicas
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _metrics_export_port=free_port())
    from envs import register_rllib

    register_rllib()
    yield ray
    ray.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

"""Fixtures every test folder shares: a tiny synthetic market (session-scoped), a small env config, small CSV files,
a local Ray instance, exported (untrained) agents, and the real servers some tests need (moto's S3, PostgreSQL, a Ray
head started from the command line). Helpers without fixtures live in ``tests/support``.

Markers (pyproject.toml) say what a test starts: ``ray`` (a local Ray instance), ``cluster`` (a Ray cluster started
with ``ray start``), ``postgres`` (a PostgreSQL server), ``s3`` (moto's S3 server), ``slow`` (a whole pipeline or
a long training run). ``make test-fast`` runs the tests with none of them.

Hypothesis runs a modest number of examples without a deadline, so the whole suite stays fast on a 2-CPU laptop
while the property tests still explore the input space.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from envs.config import EnvConfig
from envs.market import MarketData
from envs.synthetic import default_market
from tests.support import postgres
from tests.support.clusters import ray_head
from tests.support.markets import TinyMarket
from tests.support.paths import REPO_ROOT, free_port
from tests.support.s3 import S3, moto_server

settings.register_profile("suite", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


# -- the test process's exit ------------------------------------------------------------------------------------------

_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with pytest's status once every report is written, without tearing the interpreter down.

    The test process loads pyarrow's S3 client, two OpenSSL builds (Python's and psycopg's), gRPC, torch and Ray's
    core worker; their native destructors at interpreter shutdown once crashed a CI run (SIGSEGV) after "539
    passed", which turned a green run red. Nothing a test asserts runs after this point: the products' own
    processes (sweeps, Serve apps, CLIs) run as subprocesses whose exit codes the tests check."""
    if _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])


# -- data ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout (configs/, data/, demo.py live here)."""
    return REPO_ROOT


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
        return MarketData(
            dates=market.dates, closes=closes, assets=market.assets, extras=dict(market.extras), source="perturbed"
        )

    return perturb


@pytest.fixture
def price_rows() -> list[list[str]]:
    """Cells of a small valid CSV: header ``date,SPY,TLT,rf`` then 8 business days. ``rows[i]`` is file line ``i + 1``."""
    dates = [
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
        "2024-01-08",
        "2024-01-09",
        "2024-01-10",
        "2024-01-11",
    ]
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


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """A 6-year synthetic market written as a real CSV (+ .params.json), for training runs and CLIs."""
    from envs.law_file import write_synthetic

    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    write_synthetic(path, seed=3, years=6, n_assets=4, n_regimes=3)
    return path


# -- Ray and exported agents ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monkeypatch_module():
    """``monkeypatch`` for module-scoped fixtures (e.g. a server started with an environment variable set)."""
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray instance (2 CPUs, token auth off) for one test module; shut down afterwards."""
    import ray

    from serving.lifecycle import use_throughput_mode

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    use_throughput_mode()  # Serve tests run the way `rlportfolio serve` serves: HAProxy ingress, gRPC between replicas
    if not ray.is_initialized():
        # address="local": a new instance of the test's own, never a cluster `ray start` left running on this machine.
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _metrics_export_port=free_port(),
        )
    from envs import register_rllib

    register_rllib()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def models(tiny, small_config, tmp_path_factory):
    """Two exported (untrained) agents on the tiny market: PPO (continuous) and DQN (discrete grid)."""
    from envs.portfolio_env import PortfolioEnv
    from tests.support.agents import export_untrained

    root = tmp_path_factory.mktemp("serve")
    for algo, update in (
        ("ppo", {"continuous_map": "softmax_delta", "softmax_scale": 1.0}),
        ("dqn", {"action_mode": "discrete"}),
    ):
        export_untrained(
            PortfolioEnv(small_config.model_copy(update=update), market=tiny.market), algo, root, root / "models"
        )
    return root / "models"


# -- real servers -----------------------------------------------------------------------------------------------------


@pytest.fixture
def head():
    """A real local head (`ray start --head`, 2 CPUs, its own ports, token auth off) whose job agent is ready; its
    dashboard URL."""
    with ray_head() as url:
        yield url


@pytest.fixture(scope="module")
def s3(monkeypatch_module) -> S3:
    """moto's S3 server (a real HTTP S3 API) on a free localhost port with one bucket, and this test process's
    environment pointed at it (``AWS_ENDPOINT_URL``, which pyarrow, boto3 and Ray Tune read)."""
    with moto_server() as server:
        for key, value in server.env.items():
            monkeypatch_module.setenv(key, value)
        yield server


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session, stopped and removed afterwards; its URL without a database.
    `.ci/run` installs Debian's PostgreSQL where it is missing; outside CI a machine without it skips these tests."""
    programs = postgres.bindir()
    if programs is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's initdb is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
    with postgres.postgres_server(programs) as url:
        yield url


@pytest.fixture()
def postgres_url(postgres_server):
    """A fresh, empty database on the session's PostgreSQL server (dropped afterwards, connections and all)."""
    url = postgres.new_database(postgres_server)
    yield url
    postgres.drop_database(postgres_server, url)


# -- markers from the servers a test starts --------------------------------------------------------------------------

_SERVER_MARKERS = {"ray_local": "ray", "head": "cluster", "s3": "s3", "postgres_server": "postgres"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that asks for a server's fixture carries that server's marker, so ``make test-fast`` (``-m`` without
    them) never starts one. Fixtures reached only through ``request.getfixturevalue`` are marked where they are used."""
    for item in items:
        for fixture, marker in _SERVER_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, marker))

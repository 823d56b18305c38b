"""Shared fixtures and helpers: a tiny synthetic market (session-scoped), a small env config, small CSV files, fast
training overrides, exported (untrained) agents, a local Ray instance, a Ray head started with `ray start`, and
request bodies for the Serve app. No test module imports another; what two modules share lives here.

Hypothesis runs a modest number of examples without a deadline, so the whole suite stays fast on a 2-CPU laptop
while the property tests still explore the input space.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from envs.config import EnvConfig
from envs.market import MarketData
from envs.synthetic import MarketParams, default_market

REPO_ROOT = Path(__file__).resolve().parent.parent

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


def full_pass(config: EnvConfig, split: str = "train") -> EnvConfig:
    """``config`` playing the whole ``split`` once, from its first day."""
    return config.model_copy(update={"split": split, "random_start": False, "episode_days": None})


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
def monkeypatch_module():
    """``monkeypatch`` for module-scoped fixtures (e.g. a server started with an environment variable set)."""
    with pytest.MonkeyPatch.context() as patch:
        yield patch


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


# -- strategies a report or the demo shows ---------------------------------------------------------------------------

# The configured classical baselines, in report order, when no regime model is at hand (configs/evaluation.yaml).
BASELINE_NAMES = (
    "equal_weight",
    "buy_and_hold",
    "fixed_mix",
    "min_variance",
    "mean_variance",
    "risk_parity",
    "growth_optimal",
)
# With the regime baseline and a synthetic market's three oracles.
STRATEGY_NAMES = BASELINE_NAMES + ("regime_growth", "oracle_constant_mix", "oracle_filtered", "oracle_regime_aware")


# -- exported agents -----------------------------------------------------------------------------------------------

ASSETS = ["STOCK", "BOND", "GOLD", "CRYPTO"]


def build_module(env, algo: str):
    """A freshly initialised RLlib module for ``env`` (what training would produce, before learning)."""
    from training.algorithms import algorithm_config_class

    config = algorithm_config_class(algo)().rl_module(model_config={"fcnet_hiddens": [16]})
    return config.get_rl_module_spec(env=env, inference_only=True).build()


def export_agent(env, module_dir, models_dir, agent="ppo", mean_daily_log_growth=0.0004, algo="ppo"):
    """Export the module saved at ``module_dir`` for ``env`` as ``models_dir/agent``; the agent folder (a ``Path`` for
    a local ``models_dir``, else its ``Location``)."""
    from envs.regimes import carry_regime_model
    from policies.export import export_policy

    exported = export_policy(
        module_dir,
        models_dir,
        agent=agent,
        algorithm=algo,
        env_config=carry_regime_model(env.config, env.regime_model),  # as training carries it
        market=env.market,
        splits=env.splits,
        validation={"mean_daily_log_growth": mean_daily_log_growth, "sharpe": 1.0},
        source_checkpoint="runs/x/checkpoint",
        seed=3,
        resolved_config={"algo": algo},
    )
    return exported.local_path if exported.is_local else exported


def export_untrained(env, algo: str, folder: Path, models_dir: Path, agent: str | None = None) -> Path:
    """Build, save and export an untrained ``algo`` module for ``env``; the agent folder."""
    agent = agent or algo
    build_module(env, algo).save_to_path(str(folder / f"{agent}-module"))
    return export_agent(env, folder / f"{agent}-module", models_dir, agent=agent, algo=algo)


@pytest.fixture(scope="module")
def models(tiny, small_config, tmp_path_factory):
    """Two exported (untrained) agents on the tiny market: PPO (continuous) and DQN (discrete grid)."""
    from envs.portfolio_env import PortfolioEnv

    root = tmp_path_factory.mktemp("serve")
    for algo, update in (
        ("ppo", {"continuous_map": "softmax_delta", "softmax_scale": 1.0}),
        ("dqn", {"action_mode": "discrete"}),
    ):
        export_untrained(
            PortfolioEnv(small_config.model_copy(update=update), market=tiny.market), algo, root, root / "models"
        )
    return root / "models"


# -- the Serve app's requests --------------------------------------------------------------------------------------


def body(tiny, day: int = 300, n: int = 30, weights=None, client_id=None) -> dict:
    """An ``/allocate`` body: ``n`` closes of the tiny market up to ``day``."""
    closes = tiny.market.closes[day - n + 1 : day + 1]
    out = {"prices": {a: closes[:, k].tolist() for k, a in enumerate(ASSETS)}}
    if weights is not None:
        out["weights"] = dict(zip(ASSETS, weights))
    if client_id is not None:
        out["client_id"] = client_id
    return out


def allocate_many(app: str, payloads: list[dict], headers: dict | None = None, concurrency: int = 16) -> list:
    """POST every payload to ``app``/allocate, ``concurrency`` at a time; the responses in order."""
    import httpx

    async def run() -> list[httpx.Response]:
        limit = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=app, timeout=30) as http:

            async def one(payload):
                async with limit:
                    return await http.post("/allocate", json=payload, headers=headers)

            return await asyncio.gather(*(one(p) for p in payloads))

    return asyncio.run(run())


# -- a Ray head started from the command line ----------------------------------------------------------------------

RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def head():
    """A real local head (`ray start --head`, 2 CPUs, its own ports) whose job agent is ready; its dashboard URL."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port, dashboard = free_port(), free_port()
    started = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            f"--dashboard-port={dashboard}",
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=true",
            "--num-cpus=2",
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    url = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for_job_agent(url)
        yield url
    finally:
        stop_cluster(url, env)


def stop_cluster(url: str, env: dict) -> None:
    """Serve, then every Ray node on this machine. Serve first: in the high-throughput mode (inherited from the test
    session's environment) its HAProxy is a child process that `ray stop --force` would leave running, holding its
    ports."""
    subprocess.run(
        [str(Path(RAY).parent / "serve"), "shutdown", "-y", "--address", url], env=env, capture_output=True, timeout=120
    )
    subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def wait_for_job_agent(url: str, timeout_s: float = 90.0) -> None:
    """Right after `ray start` the head's job agent may answer "No available agent": wait until a job runs."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            job = client.submit_job(entrypoint="true")
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, "the head's first job did not finish"
        time.sleep(1)


# -- a real S3 API on localhost ------------------------------------------------------------------------------------


class S3(NamedTuple):
    endpoint: str
    bucket: str
    env: dict[str, str]  # what a process (a Ray node, a job) needs in its environment to reach it

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(monkeypatch_module):
    """moto's S3 server (``moto_server``, a real HTTP S3 API) on a free localhost port with one bucket, and this
    test process's environment pointed at it (``AWS_ENDPOINT_URL``, which pyarrow, boto3 and Ray Tune read)."""
    import boto3
    import httpx

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        for key, value in env.items():
            monkeypatch_module.setenv(key, value)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="rlportfolio")
        yield S3(endpoint, "rlportfolio", env)
    finally:
        server.terminate()
        server.wait(timeout=30)


def s3_keys(s3: S3, prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3", endpoint_url=s3.endpoint).get_paginator("list_objects_v2")
    return sorted(
        o["Key"] for page in pages.paginate(Bucket=s3.bucket, Prefix=prefix) for o in page.get("Contents", [])
    )


def trial_statuses(experiment) -> dict[str, str]:
    """Each trial's status in Tune's newest experiment snapshot under ``experiment`` (a folder or a storage URI):
    what a resume, or a retry after a lost node, starts from."""
    from core.storage import Location

    snapshots = [c for c in Location.of(experiment).children() if c.name.startswith("experiment_state-")]
    if not snapshots:
        return {}
    try:
        state = json.loads(max(snapshots, key=lambda c: c.name).read_text())
    except (OSError, json.JSONDecodeError):  # caught mid-write; the next look sees it whole
        return {}
    trials = (json.loads(trial) for trial, _ in state["trial_data"])
    return {trial["relative_logdir"]: trial["status"] for trial in trials}


# -- a real PostgreSQL server ----------------------------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    """Where the machine's PostgreSQL server programs are (``initdb`` on PATH, or Debian's versioned folder)."""
    import shutil

    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session: ``initdb`` into a fresh folder and ``pg_ctl start`` on a free
    localhost port (as the ``postgres`` user when the tests run as root, which PostgreSQL refuses), stopped and
    removed afterwards. Yields the server's URL without a database. `.ci/run` installs Debian's PostgreSQL where it
    is missing; outside CI a machine without it skips the PostgreSQL tests."""
    import shutil
    import tempfile

    bindir = _postgres_bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's initdb is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="rlportfolio-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _postgres_admin(server: str, statement: str) -> None:
    """Run ``statement`` on ``server``'s maintenance database (``postgres_server``'s URL, as psycopg reads it)."""
    import psycopg

    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
        conn.execute(statement)


def new_postgres_database(server: str) -> str:
    """The URL of a fresh, empty database created on ``server`` (``postgres_server``'s URL)."""
    import uuid

    name = f"t{uuid.uuid4().hex[:12]}"
    _postgres_admin(server, f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture()
def postgres_url(postgres_server):
    """A fresh, empty database on the session's PostgreSQL server (dropped afterwards, connections and all)."""
    url = new_postgres_database(postgres_server)
    yield url
    _postgres_admin(postgres_server, f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")


# -- A/B experiments over HTTP (test_ab_experiments, test_ab_postgres) -------------------------------------------------

TOKEN = "admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def ab_app(models: Path, monkeypatch_module, log_url: str, *, token: str | None = TOKEN, name: str = "ab"):
    """The A/B app ``name`` (PPO and DQN half and half, equal weight as fallback, two ingress replicas, the bearer
    ``token`` or none) with its experiment log at ``log_url``, served on a free port; ``(base URL, log URL,
    redeploy)`` where ``redeploy()`` deletes the whole app and deploys it again. Serve is shut down afterwards."""
    from ray import serve

    from serving.builder import build_app

    if token is None:
        monkeypatch_module.delenv("SERVE_API_TOKEN", raising=False)
    else:
        monkeypatch_module.setenv("SERVE_API_TOKEN", token)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "models_dir": str(models),
        "split": {"ppo": 0.5, "dqn": 0.5},
        "baselines": ["equal_weight"],
        "ingress_replicas": 2,
        "experiment_log": log_url,
    }

    def deploy() -> None:
        serve.run(build_app(args), name=name, route_prefix="/")

    def redeploy() -> None:
        serve.delete(name)
        deploy()

    try:
        deploy()
        yield f"http://127.0.0.1:{port}", log_url, redeploy
    finally:
        serve.shutdown()


async def traffic(base: str, tiny, n: int, *, prefix: str, during=None, concurrency: int = 8) -> dict:
    """``n`` allocate-then-feedback rounds from distinct clients, ``concurrency`` at a time, with ``during()``
    awaited once a third are sent. Every acknowledged request id and feedback, and every failure."""
    acknowledged, fed, failures = {}, set(), []
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int, http: httpx.AsyncClient) -> None:
        async with limit:
            try:
                answer = await http.post("/allocate", json=body(tiny, client_id=f"{prefix}-{i}"), headers=ADMIN)
            except httpx.HTTPError as exc:
                failures.append(f"allocate: {type(exc).__name__}")
                return
            if answer.status_code != 200:
                failures.append(f"allocate: {answer.status_code}")
                return
            request_id = answer.json()["request_id"]
            acknowledged[request_id] = answer.json()["agent"]
            try:
                reply = await http.post(
                    "/feedback", json={"request_id": request_id, "realized_return": 0.001}, headers=ADMIN
                )
            except httpx.HTTPError as exc:
                failures.append(f"feedback: {type(exc).__name__}")
                return
            if reply.status_code == 200:
                fed.add(request_id)
            else:
                failures.append(f"feedback: {reply.status_code}")

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        tasks = [asyncio.create_task(one(i, http)) for i in range(n)]
        if during is not None:
            while len(acknowledged) < n // 3:
                await asyncio.sleep(0.02)
            await during(http)
        await asyncio.gather(*tasks)
    return {"acknowledged": acknowledged, "fed": fed, "failures": failures}


def logged(log_url: str) -> tuple[set[str], set[str]]:
    """The request ids of the answers and of the feedback in the log."""
    from serving.experiment_log import ExperimentLog

    contents = ExperimentLog(log_url).read()
    answered = {r["request_id"] for r in contents.assignments if r["kind"] == "answer" and r["arm"]}
    return answered, {r["request_id"] for r in contents.feedback}


def kill_store_and_an_ingress_under_traffic(base: str, log_url: str, tiny) -> dict:
    """Kill the A/B app's experiment store and one ingress replica while 400 allocate-then-feedback rounds run; every
    acknowledged answer and feedback must be in the log, and the restarted store's statistics must count them all."""
    import ray

    from serving.experiment_log import ExperimentLog

    def actors(word: str) -> list:
        return [a for a in ray.util.list_named_actors(all_namespaces=True) if word in a["name"]]

    async def kill(http: httpx.AsyncClient) -> None:
        for name in (actors("StatsStore")[0], actors("Ingress")[0]):
            ray.kill(ray.get_actor(name["name"], namespace=name["namespace"]), no_restart=False)
            await asyncio.sleep(0.3)

    result = asyncio.run(traffic(base, tiny, 400, prefix="kill", during=kill))
    print(
        f"killed: {len(result['acknowledged'])} answers and {len(result['fed'])} feedbacks acknowledged, "
        f"{len(result['failures'])} failed ({sorted(set(result['failures']))})"
    )
    answered, feedback = logged(log_url)
    assert set(result["acknowledged"]) <= answered, "an acknowledged answer is missing from the log"
    assert result["fed"] <= feedback, "an acknowledged feedback is missing from the log"
    assert len(result["acknowledged"]) >= 200, result["failures"][:10]

    deadline = time.monotonic() + 120  # the store restarts and rebuilds its statistics from the log
    while time.monotonic() < deadline:
        try:
            stats = httpx.get(f"{base}/ab/stats", headers=ADMIN, timeout=30)
            if stats.status_code == 200:
                break
        except httpx.HTTPError:  # the ingress waits for the restarting store
            pass
        time.sleep(1)
    arms = stats.json()["arms"]
    routed = [r for r in ExperimentLog(log_url).read().assignments if r["kind"] == "answer" and not r["forced"]]
    assert sum(a["requests"] for a in arms.values()) == len(routed)
    assert sum(a["feedback"] for a in arms.values()) == len(feedback)
    return result


def redeploy_under_traffic(served, tiny) -> tuple[dict, dict]:
    """60 rounds of traffic, then the whole app deleted and deployed again: ``/ab/stats`` before and after."""
    base, _, redeploy = served
    asyncio.run(traffic(base, tiny, 60, prefix="redeploy"))
    before = httpx.get(f"{base}/ab/stats", headers=ADMIN).json()
    redeploy()
    return before, httpx.get(f"{base}/ab/stats", headers=ADMIN).json()

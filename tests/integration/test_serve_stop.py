"""Stopping ``python -m serving.app`` every way a user or a machine does, with real processes: SIGTERM to the process
(``docker stop``), SIGINT to its process group (a terminal's Ctrl-C), SIGTERM to its group, and ``kill -9``. Each must
end the app within 10 s of the signal and, a few seconds later, leave nothing of its local Ray instance running:
no HAProxy on the port (nor on HAProxy's stats and metrics ports), no GCS, raylet, dashboard, agent or actor. And a
start on a port another process holds exits at once, naming that process.

Every app runs on free ports of its own (HAProxy's stats and metrics ports included, so that Serve apps of other
tests on the machine are no obstacle) with one exported PPO agent.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.paths import REPO_ROOT, free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STOP_WITHIN_S = 10.0  # signal to exit
CLEAN_WITHIN_S = 5.0  # exit to nothing left running
START_TIMEOUT_S = 180.0


def psutil_module():
    """psutil as Ray ships it (``ray/thirdparty_files``, on sys.path once Ray is imported)."""
    import ray  # noqa: F401

    return importlib.import_module("psutil")


@pytest.fixture(scope="module")
def agent_models(tiny, small_config, tmp_path_factory) -> Path:
    """One exported (untrained) PPO agent on the tiny market: the smallest app (PPO, the baselines, the store and the
    ingress), the quickest to start on 2 CPUs."""
    from envs.portfolio_env import PortfolioEnv
    from tests.support.agents import export_untrained

    root = tmp_path_factory.mktemp("serve-stop")
    env = PortfolioEnv(small_config.model_copy(update={"continuous_map": "softmax_delta"}), market=tiny.market)
    export_untrained(env, "ppo", root, root / "models")
    return root / "models"


@dataclass
class App:
    process: subprocess.Popen
    port: int
    ports: list[int]  # every port the instance listens on by our choice: the app's, Ray's metrics, HAProxy's two
    log: Path
    seen: dict = field(default_factory=dict)  # pid -> psutil.Process: the app's descendants, as last looked at

    def output(self) -> str:
        return self.log.read_text() if self.log.is_file() else ""

    def note_descendants(self) -> list:
        psutil = psutil_module()
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.Error:
            pass
        return list(self.seen.values())


def user_env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    return {**env, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmp), **extra}


def alive(process) -> bool:
    psutil = psutil_module()
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def listeners(ports: list[int]) -> list[tuple[int, int | None]]:
    psutil = psutil_module()
    return [
        (c.laddr.port, c.pid)
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port in ports
    ]


def describe(processes) -> list[str]:
    out = []
    for process in processes:
        try:
            out.append(f"{process.name()} {process.pid}")
        except Exception:
            out.append(f"pid {process.pid}")
    return out


@contextmanager
def served(models: Path, tmp_path: Path, *, dashboard: bool = False) -> Iterator[App]:
    """``python -m serving.app`` in a session of its own, answering /health; afterwards, whatever it left running is
    killed (only the processes that were its descendants), so a failed test leaves nothing behind either."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rlp-", dir="/tmp"))  # Ray's socket paths must stay short
    port, metrics, stats, haproxy_metrics = (free_port() for _ in range(4))
    env = user_env(
        ray_tmp, RAY_SERVE_HAPROXY_STATS_PORT=str(stats), RAY_SERVE_HAPROXY_METRICS_PORT=str(haproxy_metrics)
    )
    command = [sys.executable, "-m", "serving.app", "--models", str(models), "--port", str(port)]
    command += ["--metrics-port", str(metrics)] + ([] if dashboard else ["--no-dashboard"])
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    app = App(process, port, [port, metrics, stats, haproxy_metrics], log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "serving on http://" not in app.output():
            assert process.poll() is None, f"the app ended while starting:\n{app.output()[-3000:]}"
            assert time.monotonic() < deadline, f"no banner within {START_TIMEOUT_S:.0f} s:\n{app.output()[-3000:]}"
            time.sleep(0.2)
        answer = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30)
        assert answer.status_code == 200, answer.text
        yield app
    finally:
        leftovers = app.note_descendants()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for child in leftovers:
            if alive(child):
                child.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def stop_and_measure(app: App, how: str) -> float:
    """Send the signal ``how`` names; the seconds until the app has exited (asserted under ``STOP_WITHIN_S``), then
    assert that within ``CLEAN_WITHIN_S`` nothing it started still runs or listens on its ports."""
    before = app.note_descendants()
    names = {d.split()[0] for d in describe(before)}
    assert {"gcs_server", "raylet", "haproxy"} <= names, names  # the instance is there to be stopped
    assert any(port == app.port and pid in app.seen for port, pid in listeners([app.port]))  # HAProxy holds the port
    where, sig = how.split()
    started = time.monotonic()
    if where == "group":
        os.killpg(app.process.pid, getattr(signal, sig))
    else:
        app.process.send_signal(getattr(signal, sig))
    try:
        code = app.process.wait(timeout=STOP_WITHIN_S + 20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{how}: still running {STOP_WITHIN_S + 20:.0f} s after the signal:\n{app.output()[-3000:]}")
    took = time.monotonic() - started
    print(f"\n{how}: exited with {code} after {took:.1f} s")
    assert took < STOP_WITHIN_S, f"{how}: took {took:.1f} s to exit:\n{app.output()[-3000:]}"
    assert code == (-signal.SIGKILL if sig == "SIGKILL" else 0), app.output()[-3000:]

    deadline = time.monotonic() + CLEAN_WITHIN_S
    while True:
        running = [p for p in app.seen.values() if alive(p)]
        held = listeners(app.ports)
        if not running and not held:
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"{how}: {CLEAN_WITHIN_S:.0f} s after the exit still running: {describe(running)}; "
                f"ports held: {held}\n{app.output()[-3000:]}"
            )
        time.sleep(0.2)
    print(f"{how}: nothing left {time.monotonic() - started:.1f} s after the signal")
    with socket.socket() as probe:  # the port can be served again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", app.port))
    for noise in ("Traceback", "(raylet)", "did not exit within"):
        assert noise not in app.output(), app.output()[-3000:]
    return took


def start_on(port: int, models: Path, ray_tmp: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m serving.app`` on ``port`` (every other port free); its run and how long it took."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "serving.app", "--models", str(models), "--port", str(port)]
        + ["--metrics-port", str(free_port()), "--no-dashboard"],
        cwd=REPO_ROOT,
        env=user_env(
            ray_tmp, RAY_SERVE_HAPROXY_STATS_PORT=str(free_port()), RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port())
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - started


def error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return line


@pytest.mark.timeout(240)
def test_sigterm_to_the_process_stops_it_within_10_s_leaving_nothing(agent_models, tmp_path):
    with served(agent_models, tmp_path) as app:
        # A second server on the same port is refused at once, naming the first one's HAProxy and the first server.
        done, took = start_on(app.port, agent_models, tmp_path)
        print(f"\nport of a running app: exited with {done.returncode} after {took:.1f} s")
        line = error_line(done)
        assert took < 15 and line.startswith(f"error: 127.0.0.1:{app.port} (--port) is in use by pid "), line
        assert (
            "(haproxy: " in line and f"the HAProxy of a running Serve app (its server: pid {app.process.pid} " in line
        )
        stop_and_measure(app, "process SIGTERM")


@pytest.mark.timeout(240)
def test_ctrl_c_to_the_process_group_stops_it_and_its_dashboard_within_10_s(agent_models, tmp_path):
    with served(agent_models, tmp_path, dashboard=True) as app:
        assert any("dashboard" in d for d in describe(app.note_descendants()))
        stop_and_measure(app, "group SIGINT")


@pytest.mark.timeout(240)
def test_sigterm_to_the_process_group_stops_it_within_10_s_leaving_nothing(agent_models, tmp_path):
    """The signal reaches GCS and raylet too, which stop answering: the app must not wait on them."""
    with served(agent_models, tmp_path) as app:
        stop_and_measure(app, "group SIGTERM")


@pytest.mark.timeout(240)
def test_kill_9_leaves_no_haproxy_or_ray_process_holding_the_port(agent_models, tmp_path):
    """Nothing runs in a killed process: Ray ends its node processes with their driver, and the app's watchdog
    ends the rest (HAProxy, the agents, the dashboard's subprocesses)."""
    with served(agent_models, tmp_path, dashboard=True) as app:
        stop_and_measure(app, "process SIGKILL")
    (line,) = [line for line in app.output().splitlines() if line.startswith("serving: ended what the server")]
    assert "haproxy" in line, line


@pytest.mark.timeout(120)
def test_a_start_on_a_held_port_names_the_holder_and_exits_2_within_seconds(agent_models, tmp_path):
    ray_tmp = Path(tempfile.mkdtemp(prefix="rlp-", dir="/tmp"))
    try:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            done, took = start_on(port, agent_models, ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"\nheld port: exited with {done.returncode} after {took:.1f} s")
    line = error_line(done)
    assert took < 15, took
    assert line.startswith(f"error: 127.0.0.1:{port} (--port) is in use by pid {os.getpid()} ("), line
    assert line.endswith("; stop it, or choose other ports (--port)"), line
    assert "Ray:" not in done.stderr  # refused before starting Ray

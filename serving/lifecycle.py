"""Starting, running and stopping the Serve app in a process of its own (``python -m serving.app``, the demo,
``benchmarks/serve_floor.py``), quietly, without 30-second waits, and without leaving processes behind.

Ray Serve's high-throughput mode (Ray >= 2.56): HAProxy takes HTTP straight to the ingress replica (no proxy actor
hop) and replicas talk gRPC (``benchmarks/serve_load.py``: /allocate p50 17 -> 8 ms, 96 -> 185 req/s at 32
concurrent). ``use_throughput_mode`` sets it for the local Ray instance a command is about to start; on a cluster set
``THROUGHPUT_ENV`` where ``ray start`` runs.

Stopping. A local instance is this process's tree: the driver starts GCS, raylet, the dashboard and their agents
(Ray blocks SIGINT in them and ties them to the driver's life, ``PR_SET_PDEATHSIG``); the raylet starts the actors;
Serve's ``HAProxyManager`` actor starts HAProxy, which listens on the app's port and on HAProxy's stats and metrics
ports (8404 and 9101 unless ``RAY_SERVE_HAPROXY_STATS_PORT``/``RAY_SERVE_HAPROXY_METRICS_PORT`` say otherwise), with
nothing tying it to anyone: whatever kills its actor without Serve's shutdown (the raylet's end) leaves HAProxy
running, holding those ports, and every later start waits its whole start-up for them. So:

- ``stop_on_signals``: the first SIGINT or SIGTERM (Ctrl-C sends SIGINT to the whole process group, ``docker stop``
  SIGTERM to the process) interrupts the main thread; later ones are ignored. ``stop_and_exit`` then shuts Serve
  down, then Ray, each within its own short deadline (a SIGTERM to the group reaches GCS and raylet too: they start
  shutting down, stop answering, and every call to them would wait 60 s, so the stop skips to the next step), ends
  whatever of the instance is left (the process tree as it was when the signal came, and HAProxy by the node id in
  its configuration's path) and exits with 0: within ``STOP_DEADLINE_S`` of the signal in every case, a timer
  thread seeing to it when the main thread is stuck.
- ``serving.instance.start_watchdog``: a small process in a session of its own (out of reach of the group's signals) that notes the
  instance's processes every second and, once this process is gone however it went (``kill -9`` included), ends
  those still running, HAProxy first among them; it never touches a process that was not this one's descendant or
  this node's HAProxy.
- ``serving.instance.check_ports_free``: before Ray starts, every port the instance will listen on must be free; a held one is an
  error naming the process that holds it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import NoReturn

from serving.instance import INSTANCE, end_processes, listed

log = logging.getLogger(__name__)

THROUGHPUT_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
# A local instance drains its ingress for 2 s on shutdown instead of Ray's 30 s (no load balancer to drain from);
# configs/serve.yaml sets the same for `serve run` through the application's runtime_env.
LOCAL_ENV = {**THROUGHPUT_ENV, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}

# The stop's deadlines (measured on 2 CPUs: Serve's shutdown 4.7 s, the ingress's 2-s drain and each replica's 2-s
# graceful-shutdown loop; ray.shutdown() 1.6 s; the rest 0.1 s).
STOP_DEADLINE_S = 8.0  # from the first signal to the forced end of the stop (the exit follows within a second)
GCS_ANSWER_S = 1.0  # a GCS that does not answer within this has been stopped too (a SIGTERM to the group)
SERVE_STOP_S = 5.5  # Serve's graceful shutdown: apps, replicas (the ingress writes its queued log rows), HAProxy
RAY_STOP_S = 2.0  # ray.shutdown(): raylet, GCS, dashboard


def use_throughput_mode() -> None:
    """Set ``LOCAL_ENV`` (unless already set) for the local Ray instance about to start: call before ``ray.init``."""
    for name, value in LOCAL_ENV.items():
        os.environ.setdefault(name, value)


def shutdown_serve(timeout_s: float = 30.0, *, disconnect: bool = True) -> bool:
    """Shut Serve down (apps, replicas, HAProxy, the controller) and wait until the controller is gone; whether it
    went within ``timeout_s``.

    ``serve.shutdown()`` leaves a ``graceful_shutdown`` call pending on the controller while the controller kills
    itself, so Ray prints "(raylet) Task ServeController.graceful_shutdown failed ..." to the console. Asking the
    controller to shut down without waiting, then watching it exit, does the same work without that line. With
    ``disconnect`` (the default), ``serve.shutdown()`` then drops this process's cached handles, or does the shutdown
    the standard way where the controller did not exit; a process about to exit passes False: no Serve call that may
    start Ray again (Serve calls ``ray.init()`` where Ray is not initialised).
    """
    import ray
    from ray import serve
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return True  # Serve is not running
    gone = False
    try:
        ray.get(controller.graceful_shutdown.remote(wait=False), timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)  # ValueError once it has exited
            time.sleep(0.2)
        if disconnect:
            log.warning(f"Serve's controller did not exit within {timeout_s:g} s; shutting it down the standard way")
    except (ValueError, ray.exceptions.RayActorError):
        gone = True
    if disconnect:
        serve.shutdown()  # drops this process's cached handles; nothing is left to stop
    return gone


# -- processes ----------------------------------------------------------------------------------------------------


# -- signals --------------------------------------------------------------------------------------------------------


class _Stop:
    """The stop under way: when it began (the deadline runs from there), whether the main thread was interrupted,
    and the socket Python's C-level signal handler writes each signal's number to (``signal.set_wakeup_fd``)."""

    lock = threading.RLock()
    started_at: float | None = None
    interrupted = False
    wakeup: socket.socket | None = None


def _begin() -> None:
    """Note the instance's processes and start the deadline (``STOP_DEADLINE_S``), once."""
    with _Stop.lock:
        if _Stop.started_at is not None:
            return
        _Stop.started_at = time.monotonic()
    INSTANCE.note()  # the tree as it is now, before anything in it ends and leaves orphans
    _quiet_ray()
    timer = threading.Timer(STOP_DEADLINE_S, _force_exit)
    timer.daemon = True
    timer.start()


def _quiet_ray() -> None:
    """Print nothing more of what Ray's driver relays from its processes: once the stop began, their ends are its
    doing ("(raylet) The autoscaler failed with the following error: Terminated with signal 15" and a traceback,
    where a SIGTERM to the group reaches the autoscaler's monitor)."""
    worker = sys.modules.get("ray._private.worker")
    if worker is not None and hasattr(worker, "print_to_stdstream"):
        worker.print_to_stdstream = lambda *args, **kwargs: None


def _on_signal(signum, frame) -> None:
    _begin()
    if _Stop.interrupted:
        return  # a second Ctrl-C while stopping: the stop is under way, and bounded
    _Stop.interrupted = True
    raise KeyboardInterrupt


def _watch_wakeups(wakeup: socket.socket) -> None:
    """Start the deadline as soon as a signal arrives, even while the main thread is held in Ray's C++ code (where
    Python runs no signal handler until it returns: seconds, in ``ray.init``)."""
    while True:
        try:
            numbers = wakeup.recv(64)
        except OSError:
            return
        if not numbers:
            return
        if {signal.SIGINT, signal.SIGTERM} & set(numbers):
            _begin()


def stop_on_signals() -> None:
    """SIGINT and SIGTERM stop this process as the module docstring says. Call it from the main thread, and again
    after ``ray.init``, which installs a SIGTERM handler of its own (it drains the node for 30 s)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if _Stop.wakeup is None:
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        _Stop.wakeup = writer
        threading.Thread(target=_watch_wakeups, args=(reader,), name="stop-on-signals", daemon=True).start()
    signal.set_wakeup_fd(_Stop.wakeup.fileno(), warn_on_full_buffer=False)


def _exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)  # no interpreter teardown: Ray's atexit hook would wait on a GCS that may be gone


def _force_exit() -> None:
    ended = end_processes(INSTANCE.leftovers(), grace_s=0.3)
    print(f"stopping took {STOP_DEADLINE_S:g} s; ended {listed(ended) or 'nothing more'}", file=sys.stderr, flush=True)
    _exit(0)


def _within(step, timeout_s: float) -> bool:
    """Run ``step()`` in a daemon thread; whether it returned True (or None) within ``timeout_s``."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(step())
        except Exception as exc:
            log.debug(f"while stopping: {type(exc).__name__}: {exc}")
            result.append(False)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result) and result[0] is not False


def _gcs_answers() -> bool:
    """Whether Ray's GCS answers a call within ``GCS_ANSWER_S``. A SIGTERM to the process group reaches GCS and raylet
    too: they start shutting down and stop answering, and every call to them would wait 60 s."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    def ask() -> None:
        try:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            pass  # an answer: Serve is not running

    return _within(ask, GCS_ANSWER_S)


def stop_and_exit(code: int = 0) -> NoReturn:
    """Stop Serve and Ray within their deadlines, end what is left of the instance, and exit with ``code``."""
    _begin()  # where Python raised the KeyboardInterrupt itself, the deadline starts now
    _Stop.interrupted = True
    print("shutting down Serve", file=sys.stderr, flush=True)
    import ray
    import ray._private.auto_init_hook

    # A step abandoned at its deadline must not start a new local instance once ray.shutdown() has run (Ray's calls
    # run ray.init() where Ray is not initialised).
    ray._private.auto_init_hook.enable_auto_connect = False
    clean = True
    if ray.is_initialized():
        if not _gcs_answers():
            clean = False
            print("Ray's GCS no longer answers (the signal reached it too): ending its processes", file=sys.stderr)
        else:
            clean = _within(lambda: shutdown_serve(SERVE_STOP_S, disconnect=False), SERVE_STOP_S + 0.2)
            clean = _within(ray.shutdown, RAY_STOP_S) and clean
    ended = end_processes(INSTANCE.leftovers())
    if ended:  # after a clean shutdown, only the dashboard's subprocesses, a moment before they end by themselves
        (log.debug if clean else log.info)(f"ended what was left of the instance: {listed(ended)}")
    _exit(code)


def serve_until_stopped(app, *, name: str, host: str, port: int, banner: str, block: bool = True) -> None:
    """Deploy ``app`` on ``host:port`` and print ``banner``; with ``block``, serve until Ctrl-C or SIGTERM (kill, a
    container stop), then stop Serve and Ray and exit the process (``stop_and_exit``)."""
    from ray import serve

    stop_on_signals()
    try:
        INSTANCE.note_node()
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=name, route_prefix="/", blocking=False)
        print(banner, file=sys.stderr, flush=True)
        while block:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop_and_exit(0)

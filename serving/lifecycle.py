"""Starting, running and stopping the Serve app in a process of its own (``python -m serving.app``, the demo,
``benchmarks/serve_floor.py``), quietly and without 30-second waits.

Ray Serve's high-throughput mode (Ray >= 2.56): HAProxy takes HTTP straight to the ingress replica (no proxy actor
hop) and replicas talk gRPC (``benchmarks/serve_load.py``: /allocate p50 17 -> 8 ms, 96 -> 185 req/s at 32
concurrent). ``use_throughput_mode`` sets it for the local Ray instance a command is about to start; on a cluster set
``THROUGHPUT_ENV`` where ``ray start`` runs.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

log = logging.getLogger(__name__)

THROUGHPUT_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
# A local instance drains its ingress for 2 s on shutdown instead of Ray's 30 s (no load balancer to drain from);
# configs/serve.yaml sets the same for `serve run` through the application's runtime_env.
LOCAL_ENV = {**THROUGHPUT_ENV, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


def use_throughput_mode() -> None:
    """Set ``LOCAL_ENV`` (unless already set) for the local Ray instance about to start: call before ``ray.init``."""
    for name, value in LOCAL_ENV.items():
        os.environ.setdefault(name, value)


def shutdown_serve(timeout_s: float = 30.0) -> None:
    """Shut Serve down (apps, replicas, HAProxy, the controller) and wait until the controller is gone.

    ``serve.shutdown()`` leaves a ``graceful_shutdown`` call pending on the controller while the controller kills
    itself, so Ray prints "(raylet) Task ServeController.graceful_shutdown failed ..." to the console. Asking the
    controller to shut down without waiting, then watching it exit, does the same work without that line.
    """
    import ray
    from ray import serve
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return  # Serve is not running
    try:
        ray.get(controller.graceful_shutdown.remote(wait=False), timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)  # ValueError once it has exited
            time.sleep(0.2)
        log.warning(f"Serve's controller did not exit within {timeout_s:g} s; shutting it down the standard way")
    except (ValueError, ray.exceptions.RayActorError):
        pass
    serve.shutdown()  # drops this process's cached handles; nothing is left to stop


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve_until_stopped(app, *, name: str, host: str, port: int, banner: str, block: bool = True) -> None:
    """Deploy ``app`` on ``host:port`` and print ``banner``; with ``block``, serve until Ctrl-C or SIGTERM (kill, a
    container stop), then shut Serve down: HAProxy, a child of the proxy actor, goes too."""
    from ray import serve

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=name, route_prefix="/", blocking=False)
        print(banner, file=sys.stderr, flush=True)
        while block:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("shutting down Serve", file=sys.stderr, flush=True)
        shutdown_serve()

"""The Serve application's command line, and the ``import_path`` target of ``configs/serve.yaml``
(``serving.app:build_app``, built in ``serving.builder``).

    python -m serving.app --models models/ --split ppo=0.5,sac=0.5    # Ctrl-C or SIGTERM stops it
    serve run configs/serve.yaml                                      # foreground, from the repository root
    serve deploy configs/serve.yaml                                   # to a running cluster; re-run to change the split

The app: one ``AgentDeployment`` per agent, an A/B ``Ingress`` (FastAPI) holding their handles, and a ``StatsStore``
where every ingress replica pools its A/B statistics. The traffic split lives in the ingress ``user_config``
(``split``, ``shadow``): redeploying with a new one calls ``Ingress.reconfigure`` on the running replica, with no
restart and no failed request.

Stopping: Ctrl-C (SIGINT to the process group), SIGINT or SIGTERM to the process or its group stop Serve and the
local Ray instance and end the process within 10 s; a second signal meanwhile is ignored. Nothing of the instance
outlives it, not even after ``kill -9``: a watchdog process ends what is left, HAProxy (which holds the port) included
(``serving.lifecycle``).

Exit status: 0 after a clean stop; 2 for a bad setting, among them a port the local instance needs (``--port``,
``--metrics-port``, HAProxy's stats and metrics ports) that another process listens on: the error names the process,
within seconds of the start; 1 when an agent's files cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from core.cli import fail, prog
from core.errors import ConfigError, DataError
from core.runtime import init_ray, setup_console
from serving.builder import AppArgs, build_app
from serving.instance import check_ports_free, start_watchdog
from serving.lifecycle import serve_until_stopped, stop_and_exit, stop_on_signals, use_throughput_mode

__all__ = ["build_app", "main"]


def parse_split(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    split = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        try:
            split[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(f"--split: '{part}' is not agent=weight") from None
    return split


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("serving.app"), description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="models", help="exported agents: a folder or a storage URI (s3://bucket/models)"
    )
    parser.add_argument("--split", help="agent=weight,... (default: equal over the RL agents)")
    parser.add_argument("--shadow", help="agent evaluated on every request but never returned")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8080, help="Prometheus scrape port of the local Ray node")
    parser.add_argument(
        "--ingress-replicas", type=int, default=1, help="FastAPI ingress replicas (A/B statistics are shared)"
    )
    parser.add_argument(
        "--access-log", action="store_true", help="Serve's per-request access log in every replica (slower)"
    )
    parser.add_argument("--no-block", action="store_true", help="deploy and return (the app keeps running in Ray)")
    parser.add_argument(
        "--no-dashboard", action="store_true", help="start the local Ray instance without its dashboard"
    )
    args = parser.parse_args(argv)
    setup_console()
    local = not os.environ.get("RAY_ADDRESS")  # else the cluster's own processes and ports serve
    try:
        app = build_app(
            AppArgs(
                models_dir=args.models,
                split=parse_split(args.split),
                shadow=args.shadow,
                ingress_replicas=args.ingress_replicas,
                access_log=args.access_log,
            )
        )
        if local:
            use_throughput_mode()  # inherited by every Ray process this instance starts
            # On a cluster its own settings apply: start it with THROUGHPUT_ENV to get the fast path.
            check_ports_free(args.host, args.port, args.metrics_port)
    except (ConfigError, DataError) as exc:
        return fail(exc)
    if local:
        start_watchdog()  # ends what the instance leaves behind, however this process ends
    stop_on_signals()
    try:
        init_ray(dashboard=not args.no_dashboard, _metrics_export_port=args.metrics_port)
    except (ConfigError, DataError) as exc:
        return fail(exc)
    except KeyboardInterrupt:
        stop_and_exit(0)
    stop_on_signals()  # again: ray.init installs a SIGTERM handler of its own
    metrics = "on the cluster's metrics ports" if os.environ.get("RAY_ADDRESS") else f"on port {args.metrics_port}"
    banner = f"serving on http://{args.host}:{args.port} (API docs at http://{args.host}:{args.port}/docs); Prometheus metrics {metrics}"
    serve_until_stopped(app, name="rlportfolio", host=args.host, port=args.port, banner=banner, block=not args.no_block)
    return 0


if __name__ == "__main__":
    sys.exit(main())

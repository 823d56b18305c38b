"""Serve exported models from shared storage on a running Ray cluster, and wait until the app answers.

    python -m serving.deploy --address http://HEAD:8265 --models s3://bucket/models [--config configs/serve.yaml]
                             [--host 0.0.0.0] [--shared-filesystem] [--timeout-s 600]

``--config`` is a Serve config file (``configs/serve.yaml``); ``--models`` replaces its ``models_dir``, and the app is
checked here first (the agents' metadata read from the storage, the split and experiment resolved), so a wrong
bucket or agent name fails before anything is sent. The deploy goes to the cluster's Serve REST API, as ``serve
deploy`` does: every replica, on whichever node, copies its model from the storage into its local cache
(``policies.load``). Running again with changed settings updates the app in place.

Exit status: 0 when every application is RUNNING (the address it serves at is printed), 1 when one failed to deploy
or did not come up in time, 2 for a bad option, config or unreachable cluster.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlparse

from core.cli import fail, prog
from core.config import load_yaml
from core.errors import ConfigError, DataError
from core.runtime import dashboard_auth_mode, match_cluster_auth, setup_console
from core.storage import Location

APP_IMPORT = "serving.app:build_app"


def with_models(config: dict, models: str) -> dict:
    """``config`` with every rlportfolio application's ``models_dir`` set to ``models``, each checked by building
    its arguments' plan (``build_app`` reads the metadata; nothing starts)."""
    from serving.builder import build_app

    apps = [a for a in config.get("applications") or [] if a.get("import_path") == APP_IMPORT]
    if not apps:
        raise ConfigError(f"applications: none imports {APP_IMPORT}")
    for app in apps:
        app["args"] = {**(app.get("args") or {}), "models_dir": models}
        build_app(app["args"])
    return config


def sqlite_split_brain(config: dict, nodes: int) -> str | None:
    """Why ``config`` would split an app's SQLite experiment log across nodes, or None.

    A SQLite log is a file on one node's disk. On a cluster of several nodes the ingress replicas (which write it)
    and the ``StatsStore`` (which reads it) must be pinned to the same node by one custom resource in both
    deployments' ``ray_actor_options.resources`` (e.g. ``{head_node: 0.01}``); otherwise use a database every node
    reaches (``postgresql://...``)."""
    if nodes < 2:
        return None
    for app in config.get("applications") or []:
        if app.get("import_path") != APP_IMPORT:
            continue
        url = (app.get("args") or {}).get("experiment_log", "sqlite:///runs/experiments.db")
        if not str(url).startswith("sqlite"):
            continue
        overrides = {d.get("name"): d for d in app.get("deployments") or []}
        pins = [
            set(((overrides.get(name) or {}).get("ray_actor_options") or {}).get("resources") or {})
            for name in ("Ingress", "StatsStore")
        ]
        if not (pins[0] & pins[1]):
            return (
                f"applications[{app.get('name', 'default')}].args.experiment_log: {url} is a file on one node, and "
                f"this cluster has {nodes}: ingress replicas and the StatsStore could write and read different "
                "files. Pin both deployments to one node (the same custom resource in their ray_actor_options."
                "resources) or use a database every node reaches (postgresql://...)"
            )
    return None


def serving_url(config: dict, address: str) -> str:
    http = config.get("http_options") or {}
    host = http.get("host", "127.0.0.1")
    if host in ("0.0.0.0", "::"):
        host = urlparse(address).hostname
    return f"http://{host}:{http.get('port', 8000)}"


def wait_running(client, names: list[str], timeout_s: float) -> tuple[bool, str]:
    """Poll the apps' status until all are RUNNING, one failed, or ``timeout_s`` passed; ``(ok, last status)``."""
    deadline, last = time.monotonic() + timeout_s, ""
    while True:
        apps = client.get_serve_details().get("applications", {})
        statuses = {n: apps.get(n, {}).get("status", "NOT_STARTED") for n in names}
        line = ", ".join(f"{n} {s}" for n, s in statuses.items())
        waiting = [  # what Serve says about deployments not yet healthy (unschedulable replicas, failed builds)
            f"{name}: {d.get('status')} {d.get('message', '')}".strip()
            for n in names
            for name, d in (apps.get(n, {}).get("deployments") or {}).items()
            if d.get("status") != "HEALTHY" and d.get("message")
        ]
        line = "\n    ".join([line, *waiting])
        if line != last:
            print(f"  {line}", file=sys.stderr, flush=True)
            last = line
        failed = [n for n, s in statuses.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed:
            return False, "; ".join(f"{n}: {apps[n].get('message', '')}" for n in failed)
        if all(s == "RUNNING" for s in statuses.values()):
            return True, line
        if time.monotonic() > deadline:
            return False, f"not RUNNING after {timeout_s:.0f} s ({line})"
        time.sleep(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("serving.deploy"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="the cluster's dashboard, e.g. http://HEAD:8265")
    parser.add_argument("--models", required=True, help="exported agents in storage every node reaches (s3://...)")
    parser.add_argument("--config", default="configs/serve.yaml", help="Serve config file (its models_dir is replaced)")
    parser.add_argument(
        "--shared-filesystem", action="store_true", help="allow a local --models path: every node mounts it"
    )
    parser.add_argument(
        "--host",
        help="address the HTTP proxy binds (default the config's, 127.0.0.1; 0.0.0.0 to be reached from outside)",
    )
    parser.add_argument("--timeout-s", type=float, default=600, help="how long to wait for the app to run")
    args = parser.parse_args(argv)
    setup_console()
    try:
        if Location.of(args.models).is_local and not args.shared_filesystem:
            raise ConfigError(
                f"--models: {args.models} is a local path, which replicas on other nodes cannot read; use storage "
                "every node reaches (s3://bucket/models), or pass --shared-filesystem if every node mounts it"
            )
        models = Location.of(args.models).uri  # a shared path made absolute: the cluster resolves nothing here
        config = with_models(load_yaml(args.config), models)
        if args.host:
            config["http_options"] = {**(config.get("http_options") or {}), "host": args.host}
        from ray.dashboard.modules.serve.sdk import ServeSubmissionClient
        from ray.util.state import list_nodes

        match_cluster_auth(dashboard_auth_mode(args.address), f"--address {args.address}")  # its token, if it asks
        try:
            client = ServeSubmissionClient(args.address)  # connects and checks the cluster's version
            running = client.get_serve_details()
            nodes = len(list_nodes(address=args.address, filters=[("state", "=", "ALIVE")]))
        except (OSError, RuntimeError, ValueError) as exc:  # requests' errors are OSErrors
            raise ConfigError(f"--address: no Ray dashboard answers at {args.address} ({exc})") from None
        problem = sqlite_split_brain(config, nodes)
        if problem:
            raise ConfigError(problem)
    except (ConfigError, DataError) as exc:
        return fail(exc)
    names = [a.get("name", "default") for a in config["applications"]]
    print(f"deploying {', '.join(names)} from {models} to {args.address}", file=sys.stderr, flush=True)
    try:
        client.deploy_applications(config)
        ok, status = wait_running(client, names, args.timeout_s)
        serving = client.get_serve_details().get("http_options") or {}
    except (OSError, RuntimeError) as exc:  # a config the cluster rejects (400), or the dashboard gone
        print(f"error: {args.address} refused the deploy ({exc})", file=sys.stderr)
        return 1
    if not ok:
        print(f"error: {status}", file=sys.stderr)
        return 1
    wanted = config.get("http_options") or {}
    if running.get("applications") and any(wanted.get(k, serving.get(k)) != serving.get(k) for k in ("host", "port")):
        print(  # Serve keeps the HTTP options it started with and only logs a warning about new ones
            f"warning: Serve was already running with host {serving.get('host')} port {serving.get('port')}; those "
            "stay until `serve shutdown`",
            file=sys.stderr,
        )
    print(f"serving at {serving_url({'http_options': serving or wanted}, args.address)} (API docs at /docs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

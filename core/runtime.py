"""Starting or joining Ray for the project's commands, and a console that shows the project's lines, not notices.

``init_ray`` is what ``training.train``, ``training.sweep``, the demo and ``serving.app`` call (training registers
the env itself, ``envs.register_rllib``). With ``RAY_ADDRESS`` set it joins that cluster; otherwise it starts a
local instance of its own (even where a ``ray start`` cluster runs on this machine, which a bare ``ray.init()``
would join) with the dashboard on (``dashboard=False`` turns it off) and prints one line with the dashboard's
address and where Ray keeps its logs.

Ray's token authentication (Ray 2.60: ``RAY_AUTH_MODE``, the token in ``~/.ray/auth_token``, ``RAY_AUTH_TOKEN`` or
``RAY_AUTH_TOKEN_PATH``) is used as the cluster has it. A local instance the project starts itself runs without it
unless ``RAY_AUTH_MODE=token`` is set; a cluster that is joined is asked first (``cluster_auth_mode``: one gRPC call
to its GCS; ``dashboard_auth_mode``: the dashboard's ``/api/authentication_mode``), and this process then runs in the
cluster's mode, with the token where the cluster requires one (``ConfigError`` naming where to put it when there is
none here). Ray itself never turns the token on for an explicit ``host:port`` address, and a process whose mode
differs from its cluster's fails: without the token every call is refused (``InvalidAuthToken``), and with a token
a cluster without authentication cannot reach the process's own actors.

``job_working_dir`` tells a Ray job's driver (``ray job submit --working-dir``) where it runs: a copy that Ray deletes
once the job ends, so ``keep_outside_job`` refuses a relative output folder there.

``quiet_libraries`` drops the library notices a user of this project cannot act on, one message at a time (never a
whole logger): RLlib's "running on the new API stack" notice, the ``RLModuleConfig`` deprecation RLlib raises from its
own ``RLModule.__init__``, gymnasium's "Overriding environment rllib-single-agent-env-v0" (RLlib re-registers its
wrapper for every algorithm built in one process), Tune's "Install gputil", Tune's "Stop signal received" and
"Resume experiment with: Tuner.restore(...)" (a sweep prints its own line and ``--resume`` command instead), and INFO
chatter from Ray, Serve and MLflow start-up. Warnings and errors of every library still show.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from core.errors import ConfigError

log = logging.getLogger(__name__)

# (logger, text in the message) pairs that quiet_libraries drops.
DROPPED_NOTICES = (
    ("ray.rllib.algorithms.algorithm_config", "on the new API stack!"),
    ("ray.rllib.algorithms.sac.sac", "on the new API stack!"),
    ("ray._common.deprecation", "RLModule(config="),
    ("ray.tune.utils.util", "Install gputil"),
    ("ray.tune.tune", "Stop signal received"),
    ("ray.tune.tune", "Resume experiment with: Tuner.restore"),
)
# Loggers whose INFO lines are start-up chatter ("Started a local Ray instance", "Creating initial MLflow database
# tables", "Connecting to existing Serve app"); their warnings still show.
INFO_LOGGERS = ("ray", "ray.serve", "ray.tune", "mlflow", "alembic")


class _DropMessages(logging.Filter):
    def __init__(self, needles: tuple[str, ...]) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(needle in message for needle in self.needles)


def quiet_libraries() -> None:
    """Install the filters described in the module docstring in this process; idempotent."""
    by_logger: dict[str, tuple[str, ...]] = {}
    for name, needle in DROPPED_NOTICES:
        by_logger[name] = by_logger.get(name, ()) + (needle,)
    for name, needles in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(needles))
    for name in INFO_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level in (logging.NOTSET, logging.DEBUG, logging.INFO):
            logger.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*Overriding environment rllib-single-agent-env-v0")


PROJECT_LOGGERS = ("core", "envs", "policies", "backtesting", "training", "serving", "evaluation", "demo")


class _Console(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a record is emitted (tests and the demo swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_console(log_file: str | Path | None = None) -> None:
    """Progress on stderr as bare lines (the project's INFO and every library's warnings); with ``log_file``, the
    same plus timestamps and logger names, appended to that file. Python warnings go through logging too."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    if not any(getattr(h, "_rlportfolio", None) == "console" for h in root.handlers):
        console = _Console()
        console.setLevel(logging.INFO)
        console.setFormatter(logging.Formatter("%(message)s"))
        console._rlportfolio = "console"  # type: ignore[attr-defined]
        root.addHandler(console)
    if log_file is not None:
        path = Path(log_file).resolve()
        for handler in [h for h in root.handlers if getattr(h, "_rlportfolio", None) == "file"]:
            if handler.baseFilename != str(path):  # one log file at a time: a new run's replaces the last run's
                root.removeHandler(handler)
                handler.close()
        if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            handler._rlportfolio = "file"  # type: ignore[attr-defined]
            root.addHandler(handler)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("training.progress").setLevel(logging.DEBUG)  # throttled lines: DEBUG reaches the file only
    logging.captureWarnings(True)
    quiet_libraries()


def check_ray_address(address: str | None) -> None:
    """``RAY_ADDRESS`` for ``ray.init`` must be a cluster's GCS address (``host:6379``, ``auto``, ``ray://host:10001``).

    The dashboard's ``http://host:8265`` is the Jobs API address, for ``ray job submit``; ``ray.init`` rejects it
    with a message that does not say so.
    """
    if address and address.startswith(("http://", "https://")):
        raise ConfigError(
            f"RAY_ADDRESS={address} is a dashboard (Jobs API) address, for `ray job submit`. To run this command on that "
            "cluster, set RAY_ADDRESS to its GCS address instead: RAY_ADDRESS=auto on the head node (after "
            "`ray start --head`), host:6379, or ray://host:10001 through Ray Client"
        )


AUTH_MODE = "RAY_AUTH_MODE"
TOKEN_HELP = (
    "put the cluster's token in ~/.ray/auth_token, or set RAY_AUTH_TOKEN (the token) or RAY_AUTH_TOKEN_PATH (its "
    "file); `ray get-auth-token` on the head prints it"
)


def use_auth_mode(mode: str) -> None:
    """Run this process (and the processes it starts) in Ray's authentication mode ``mode`` (``token`` or
    ``disabled``), as Ray does when it turns the token on itself: ``RAY_AUTH_MODE`` and Ray's cached config."""
    from ray._raylet import Config

    os.environ[AUTH_MODE] = mode
    Config.initialize("")


def token_available() -> bool:
    """Whether Ray finds a token here (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``)."""
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    return bool(loader.has_token(ignore_auth_mode=True))


def cluster_auth_mode(gcs_address: str, timeout_s: float = 10.0) -> str | None:
    """``token`` when the cluster whose GCS listens at ``host:port`` refuses a call without Ray's token,
    ``disabled`` when it answers one, None when it does not answer (not there, not yet, or behind TLS)."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(gcs_address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            return "token" if exc.code() == grpc.StatusCode.UNAUTHENTICATED else None
    return "disabled"


def dashboard_auth_mode(url: str, timeout_s: float = 10.0) -> str | None:
    """The authentication mode a cluster's dashboard (``http://host:8265``) reports, or None when it does not
    answer or predates the question."""
    import httpx

    try:
        answer = httpx.get(f"{url.rstrip('/')}/api/authentication_mode", timeout=timeout_s)
        mode = answer.json().get("authentication_mode") if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return mode if mode in ("token", "disabled") else None


def match_cluster_auth(mode: str | None, where: str) -> None:
    """Run in the cluster's authentication ``mode`` (from ``cluster_auth_mode`` or ``dashboard_auth_mode``; None
    leaves this process as it is). :raises ConfigError: the cluster requires a token and there is none here."""
    if mode is None:
        return
    if mode == "token" and not token_available():
        raise ConfigError(
            f"the Ray cluster at {where} requires Ray's authentication token, and there is none here: {TOKEN_HELP}"
        )
    use_auth_mode(mode)


def gcs_address(address: str) -> str | None:
    """The ``host:port`` that ``RAY_ADDRESS`` names (``auto``: the cluster ``ray start`` started on this machine);
    None for Ray Client (``ray://``). :raises ConfigError: ``auto`` and no cluster runs here."""
    if address.startswith("ray://"):
        return None
    if address != "auto":
        return address
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        raise ConfigError(
            "RAY_ADDRESS=auto: no Ray cluster runs on this machine; start one with `ray start --head`, or unset "
            "RAY_ADDRESS to run on a local instance of this command's own"
        ) from None


def job_working_dir() -> Path | None:
    """The working directory of the Ray job this process is the driver of (``ray job submit --working-dir``): a copy
    under the session's ``runtime_resources`` that Ray deletes when the job ends. None outside such a job."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:
        return None
    cwd = Path.cwd()
    return cwd if "runtime_resources" in cwd.parts else None


def keep_outside_job(path: str | Path, option: str) -> None:
    """Refuse an output folder that a Ray job would write into its working directory (``job_working_dir``) and lose.
    :raises ConfigError: naming ``option`` (a command-line option or a YAML field) and what to give instead."""
    where = job_working_dir()
    if where is None or "://" in str(path) or Path(path).is_absolute():
        return
    example = f' (e.g. {option} "$PWD/{path}" in the shell that submits it)' if option.startswith("--") else ""
    raise ConfigError(
        f"{option}: {path} is relative, and this runs as a Ray job in {where}, a copy of the submitted folder that Ray "
        f"deletes when the job ends, with everything written in it; give an absolute path{example} or a storage URI "
        f"(s3://bucket/{Path(path).name})"
    )


def init_ray(num_cpus: int | None = None, *, dashboard: bool = True, **ray_kwargs: Any) -> dict[str, Any]:
    """Start (or join) Ray; returns ``{"address", "dashboard", "logs"}`` (values may be None).

    :param num_cpus: CPUs of a local instance (ignored when joining a cluster); default all.
    :param dashboard: run the dashboard with a local instance (on 127.0.0.1, port 8265 or the next free one).
    :param ray_kwargs: passed to ``ray.init`` for a local instance (e.g. ``_metrics_export_port``).
    :raises ConfigError: ``RAY_ADDRESS`` holds an HTTP address, or ``auto`` with no cluster here, or the cluster
        requires a token that is not here.
    """
    import ray

    quiet_libraries()
    address = os.environ.get("RAY_ADDRESS")
    check_ray_address(address)
    info: dict[str, Any] = {"address": address, "dashboard": None, "logs": None}
    if not ray.is_initialized():
        if address:
            gcs = gcs_address(address)
            if gcs is not None:
                match_cluster_auth(cluster_auth_mode(gcs), f"RAY_ADDRESS={address}")
            context = ray.init(log_to_driver=False, logging_level=logging.WARNING)
        else:
            # The project's own instance: without token auth unless asked for (Ray 2.60 turns it on by default).
            use_auth_mode(os.environ.get(AUTH_MODE) or "disabled")
            context = ray.init(
                address="local",  # not a cluster `ray start` left running (or left behind) on this machine
                num_cpus=num_cpus,
                include_dashboard=dashboard,
                dashboard_host="127.0.0.1",
                log_to_driver=False,
                logging_level=logging.WARNING,
                **ray_kwargs,
            )
        session = context.address_info.get("session_dir")
        info = {
            "address": address or context.address_info.get("gcs_address"),
            "dashboard": f"http://{context.dashboard_url}" if context.dashboard_url else None,
            "logs": str(Path(session) / "logs") if session else None,
        }
        where = (
            f"cluster at {address}" if address else f"local instance, {int(ray.cluster_resources().get('CPU', 0))} CPUs"
        )
        board = info["dashboard"] or "off"
        log.info(f"Ray: {where}; dashboard {board}; Ray's own logs in {info['logs']}")
    return info

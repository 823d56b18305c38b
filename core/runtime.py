"""Starting or joining Ray for the project's commands, and a console that shows the project's lines, not notices.

``init_ray`` is what ``training.train``, ``training.sweep``, the demo and ``serving.app`` call (training registers
the env itself, ``envs.register_rllib``). With ``RAY_ADDRESS``
set it joins that cluster; otherwise it starts a local instance with the dashboard on (``dashboard=False`` turns it
off) and prints one line with the dashboard's address and where Ray keeps its logs.

``quiet_libraries`` drops the library notices a user of this project cannot act on, one message at a time (never a
whole logger): RLlib's "running on the new API stack" notice, the ``RLModuleConfig`` deprecation RLlib raises from its
own ``RLModule.__init__``, gymnasium's "Overriding environment rllib-single-agent-env-v0" (RLlib re-registers its
wrapper for every algorithm built in one process), Tune's "Install gputil", and INFO chatter from Ray, Serve and
MLflow start-up. Warnings and errors of every library still show.
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


def init_ray(num_cpus: int | None = None, *, dashboard: bool = True, **ray_kwargs: Any) -> dict[str, Any]:
    """Start (or join) Ray; returns ``{"address", "dashboard", "logs"}`` (values may be None).

    :param num_cpus: CPUs of a local instance (ignored when joining a cluster); default all.
    :param dashboard: run the dashboard with a local instance (on 127.0.0.1, port 8265 or the next free one).
    :param ray_kwargs: passed to ``ray.init`` for a local instance (e.g. ``_metrics_export_port``).
    :raises ConfigError: ``RAY_ADDRESS`` holds an HTTP address.
    """
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    quiet_libraries()
    address = os.environ.get("RAY_ADDRESS")
    check_ray_address(address)
    info: dict[str, Any] = {"address": address, "dashboard": None, "logs": None}
    if not ray.is_initialized():
        if address:
            context = ray.init(log_to_driver=False, logging_level=logging.WARNING)
        else:
            context = ray.init(
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

"""Where MLflow stores live: one address form for Tune trials, reports and the UI command, and artifacts that stay
with their store.

MLflow records an experiment's artifact location, and each run's, as an absolute path when it creates them (a
relative one is made absolute against the working folder: ``mlflow.utils.uri.resolve_uri_if_local``, MLflow 3.17),
so a copied or moved checkout would write its run files into the original's folder. ``home_experiment`` keeps a
local SQLite store's artifacts in ``mlruns/`` beside the database file instead (``runs/mlruns/<experiment id>/`` for
``runs/mlflow.db``), and moves the experiment's records there whenever the store was copied or moved.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote, urlparse

ARTIFACTS = "mlruns"
SQLITE = "sqlite:///"


def mlflow_uri(uri: str) -> str:
    """Make a relative ``sqlite:///path`` absolute (Tune trials run in other working directories)."""
    if uri.startswith(SQLITE) and not uri[len(SQLITE) :].startswith("/"):
        path = Path(uri[len(SQLITE) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLITE + str(path)
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of a local SQLite store (``sqlite:///runs/mlflow.db``, made absolute); None for any other
    store (a server, PostgreSQL, an in-memory database)."""
    uri = mlflow_uri(uri)
    if not uri.startswith(SQLITE):
        return None
    path = uri[len(SQLITE) :].split("?", 1)[0]
    return Path(path) if path.startswith("/") else None


def artifact_root(uri: str) -> Path | None:
    """Where the artifacts of a local SQLite store go: ``mlruns/`` beside its database file; None for other stores,
    whose experiments keep the locations they were created with."""
    database = sqlite_file(uri)
    return database.parent / ARTIFACTS if database is not None else None


def home_experiment(uri: str, name: str) -> str:
    """The id of the MLflow experiment ``name`` in the store at ``uri``, created if missing. In a local SQLite store
    its artifact location is ``artifact_root(uri)/<id>``: set there when the experiment was created elsewhere (by
    MLflow's default, in the working folder's ``mlruns/``) or when the store was copied or moved since, together with
    each of its runs whose files are not only at the old place (a run whose artifacts exist only in the old folder
    keeps pointing there, so nothing logged is lost)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = mlflow_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name)
        except MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    else:
        experiment_id = experiment.experiment_id
    database, root = sqlite_file(uri), artifact_root(uri)
    if database is not None and root is not None:
        _rehome(database, int(experiment_id), root / str(experiment_id))
    return str(experiment_id)


def _local(location: str | None) -> Path | None:
    """A local artifact location as a path (a plain absolute path or a ``file:`` URI); None for anything else."""
    if not location:
        return None
    if location.startswith("/"):
        return Path(location)
    parsed = urlparse(location)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" and parsed.path.startswith("/") else None


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _rehome(database: Path, experiment_id: int, home: Path) -> None:
    moved: list[str] = []
    with closing(sqlite3.connect(database, timeout=60)) as connection, connection as db:  # closed, and committed
        row = db.execute(
            "select artifact_location from experiments where experiment_id = ?", (experiment_id,)
        ).fetchone()
        old = _local(row[0]) if row else None
        if old is None or old == home:
            return
        db.execute("update experiments set artifact_location = ? where experiment_id = ?", (str(home), experiment_id))
        runs = db.execute(
            "select run_uuid, artifact_uri from runs where experiment_id = ?", (experiment_id,)
        ).fetchall()
        for run_uuid, artifact_uri in runs:
            path = _local(artifact_uri)
            if path is None or not path.is_relative_to(old):
                continue
            new = home / path.relative_to(old)
            if _has_files(path) and not _has_files(new):  # logged in the old place only (MLflow's default folder)
                continue
            db.execute("update runs set artifact_uri = ? where run_uuid = ?", (str(new), run_uuid))
            moved.append(run_uuid)
    _forget_artifact_repos(moved)


def _forget_artifact_repos(run_ids: list[str]) -> None:
    """MLflow caches each run's artifact repository in the process (by run id): drop those of the moved runs."""
    from mlflow.tracking._tracking_service import utils

    cache = getattr(utils, "_artifact_repos_cache", None)
    for run_id in run_ids:
        if cache is not None:
            cache.pop(run_id, None)

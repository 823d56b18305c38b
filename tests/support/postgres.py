"""A real PostgreSQL server from the machine's packages (Debian's; `.ci/run` installs it where it is missing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.paths import free_port


def bindir() -> Path | None:
    """Where the machine's PostgreSQL server programs are (``initdb`` on PATH, or Debian's versioned folder)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@contextmanager
def postgres_server(programs: Path) -> Iterator[str]:
    """``initdb`` into a fresh folder and ``pg_ctl start`` on a free localhost port (as the ``postgres`` user when
    the tests run as root, which PostgreSQL refuses); stopped and removed afterwards. Yields the server's URL
    without a database."""
    root = Path(tempfile.mkdtemp(prefix="rlportfolio-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    pg(str(programs / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    pg(str(programs / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        pg(str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def admin(server: str, statement: str) -> None:
    """Run ``statement`` on ``server``'s maintenance database (``postgres_server``'s URL, as psycopg reads it)."""
    import psycopg

    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
        conn.execute(statement)


def new_database(server: str) -> str:
    """The URL of a fresh, empty database created on ``server``."""
    name = f"t{uuid.uuid4().hex[:12]}"
    admin(server, f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def drop_database(server: str, url: str) -> None:
    admin(server, f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")

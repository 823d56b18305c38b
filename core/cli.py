"""One exit-code convention for every command line (docs/architecture.md, "Command lines"):

    0  success
    1  a data error: a bad or missing file, an unreadable model, too little history (``DataError``)
    2  a usage or configuration error: a bad option, YAML field or combination (``ConfigError``; argparse also exits 2)

The error is one ``error: ...`` line on stderr that names the file, field or row, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import ConfigError, DataError

DATA_ERROR = 1
USAGE_ERROR = 2

_INVOKED_AS: list[str] = []  # set by the ``rlportfolio`` console command while a subcommand runs


@contextmanager
def invoked_as(name: str) -> Iterator[None]:
    """Run a module's ``main`` as the console's ``name`` (``rlportfolio train``): its usage lines say so."""
    _INVOKED_AS.append(name)
    try:
        yield
    finally:
        _INVOKED_AS.pop()


def prog(module: str) -> str:
    """The program name a usage line shows: the console subcommand running, else ``python -m module``."""
    return _INVOKED_AS[-1] if _INVOKED_AS else f"python -m {module}"


def fail(exc: ConfigError | DataError) -> int:
    """Print ``exc`` as the one error line and return its exit status."""
    print(f"error: {exc}", file=sys.stderr)
    return USAGE_ERROR if isinstance(exc, ConfigError) else DATA_ERROR

"""One exit-code convention for every command line (docs/architecture.md, "Command lines"):

    0  success
    1  a data error: a bad or missing file, an unreadable model, too little history (``DataError``)
    2  a usage or configuration error: a bad option, YAML field or combination (``ConfigError``; argparse also exits 2)

The error is one ``error: ...`` line on stderr that names the file, field or row, never a traceback.
"""

from __future__ import annotations

import sys

from core.errors import ConfigError, DataError

DATA_ERROR = 1
USAGE_ERROR = 2


def fail(exc: ConfigError | DataError) -> int:
    """Print ``exc`` as the one error line and return its exit status."""
    print(f"error: {exc}", file=sys.stderr)
    return USAGE_ERROR if isinstance(exc, ConfigError) else DATA_ERROR

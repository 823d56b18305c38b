"""Where MLflow stores live: one address form for Tune trials, reports and the UI command."""

from __future__ import annotations

from pathlib import Path


def mlflow_uri(uri: str) -> str:
    """Make a relative ``sqlite:///path`` absolute (Tune trials run in other working directories)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        path = Path(uri[len(prefix) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri

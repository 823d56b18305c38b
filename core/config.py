"""Configuration helpers every package uses: the frozen config base, validation with one error naming every bad
field, YAML loading with errors naming the file, and where the checkout's YAML files live.

Configs arrive as dicts (YAML, RLlib's ``env_config``, Serve's application args) and are validated once, at the
edge; inner code gets frozen objects. Unknown fields are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from core.records import Record

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # the checkout's YAML files (configs/env.yaml, ...)


class FrozenConfig(Record):
    """Base of every config model: immutable, unknown fields rejected."""


def parse_config(model: type[BaseModel], raw: Mapping[str, Any] | BaseModel | None, *, where: str = "config") -> Any:
    """Validate ``raw`` into ``model``, turning pydantic's report into one ``ConfigError`` naming every bad field."""
    if isinstance(raw, model):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data

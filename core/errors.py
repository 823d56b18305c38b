"""Project exceptions. Messages name the file, row, column or field and say what was expected."""

from __future__ import annotations


class DataError(ValueError):
    """Market data that cannot be used: bad CSV, bad values, too little history."""


class ConfigError(ValueError):
    """A configuration that cannot be honoured: unknown field, bad value, impossible split."""

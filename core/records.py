"""The base of every typed record that crosses a module or a file: immutable, unknown fields rejected, so a typo or
a field from another version is an error rather than a silent default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

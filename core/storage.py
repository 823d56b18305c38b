"""Storage every node of a cluster can reach: a local path, or a URI that ``pyarrow.fs.FileSystem.from_uri`` reads
(``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///abs/path``), the way Ray Tune reads its ``storage_path``.

Sweeps, their checkpoints and best modules, exported models and the registry all go through ``Location``, so one
setting moves them from a laptop's disk to an object store. S3 credentials and endpoint come from the usual
environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for S3-compatible stores such as
MinIO) or from the URI's query (``s3://bucket/x?endpoint_override=host:9000&scheme=http``), which every child keeps.

Object stores rename nothing atomically, so writers here never rely on renaming a folder: a single file is written
whole or not at all (one PUT, or a local write and ``os.replace``), and a folder counts only once the file that
names it is written (``policies.export``, ``training.validation``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from pyarrow import fs as pafs

from core.errors import ConfigError


class Location:
    """A file or folder on a filesystem: ``fs`` and its ``path`` there, and the ``uri`` a user wrote (and sees)."""

    __slots__ = ("fs", "path", "uri")

    def __init__(self, fs: pafs.FileSystem, path: str, uri: str) -> None:
        self.fs, self.path, self.uri = fs, path.rstrip("/") or "/", uri

    @classmethod
    def of(cls, where: str | os.PathLike | Location) -> Location:
        """``where`` as a location: a ``Location`` as is, a path (made absolute) or a URI.

        :raises ConfigError: a URI pyarrow cannot open (unknown scheme, bad query), naming it."""
        if isinstance(where, Location):
            return where
        text = os.fspath(where)
        if "://" not in text:
            path = os.path.abspath(Path(text).expanduser())  # not resolve(): a symlinked agent keeps its name
            return cls(pafs.LocalFileSystem(), path, path)
        if "@" in text.split("://", 1)[1].split("/", 1)[0]:
            raise ConfigError(
                f"{text.split('://')[0]}://...: credentials in a storage URI would be written into summaries, metadata "
                "and logs; give them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) instead"
            )
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{text}: not a storage location this machine can open ({exc})") from None
        return cls(fs, path, text.rstrip("/"))

    def __truediv__(self, name: str) -> Location:
        base, sep, query = self.uri.partition("?")
        return Location(self.fs, f"{self.path}/{name}", f"{base.rstrip('/')}/{name}{sep}{query}")

    def __str__(self) -> str:
        return self.uri

    def __fspath__(self) -> str:
        """A local location works wherever a path does (``Path(location)``, ``open``); a remote one refuses."""
        if not self.is_local:
            raise TypeError(f"{self.uri} is not on the local filesystem; use its Location methods")
        return self.path

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.uri, self.path) == (other.uri, other.path)

    def __hash__(self) -> int:
        return hash((self.uri, self.path))

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        base, sep, query = self.uri.partition("?")
        return Location(self.fs, self.path.rsplit("/", 1)[0] or "/", f"{base.rsplit('/', 1)[0]}{sep}{query}")

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def local_path(self) -> Path:
        """The path on this machine; only for a local location."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not on the local filesystem")
        return Path(self.path)

    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_text(self, text: str) -> None:
        """Write the whole file at once: a reader sees the old content or the new, never part of it."""
        data = text.encode()
        if self.is_local:
            target = self.local_path
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            return
        with self.fs.open_output_stream(self.path) as stream:  # one PUT: an object appears whole or not at all
            stream.write(data)

    def children(self) -> list[Location]:
        """What the folder holds, one level down, by name; nothing when it does not exist."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except NotADirectoryError:
            return []
        return sorted((self / info.base_name for info in infos), key=lambda loc: loc.name)

    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def delete(self) -> None:
        """Remove the file or the folder with everything in it; nothing happens when it is not there."""
        kind = self._type()
        if kind == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif kind == pafs.FileType.File:
            self.fs.delete_file(self.path)

    def upload(self, local_dir: str | os.PathLike) -> None:
        """Copy a local folder's files to this folder (made when needed)."""
        self.mkdir()
        pafs.copy_files(
            os.fspath(local_dir), self.path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs
        )

    def download(self, local_dir: str | os.PathLike) -> Path:
        """Copy this folder's files to a local folder (made when needed); that folder."""
        target = Path(local_dir)
        target.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(
            self.path, str(target), source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem()
        )
        return target

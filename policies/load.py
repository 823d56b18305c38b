"""Loading an exported policy for inference, without a Ray cluster: the module checked against its content hash,
its metadata checked against the format (``policies.format``). A model in remote storage (``s3://``, ``gs://``) is
copied once into a local cache named by its content hash (``RLPORTFOLIO_CACHE``, default
``~/.cache/rlportfolio/models``), so every node that serves or evaluates it reads the same bytes."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from core.errors import DataError
from core.storage import Location
from envs.actions import ActionMap
from policies.format import (
    METADATA,
    ModelMetadata,
    content_hash,
    read_metadata,
)
from policies.policy import Policy


def cache_dir() -> Path:
    return Path(os.environ.get("RLPORTFOLIO_CACHE", "~/.cache/rlportfolio/models")).expanduser()


def local_copy(agent_dir: str | Path | Location) -> Path:
    """The agent folder on this machine: itself when local, else a cached copy of the remote one (downloaded once
    per content hash; a partial download is never mistaken for a copy, it is renamed into place when whole).

    :raises DataError: the remote folder holds no readable metadata, or cannot be downloaded."""
    where = Location.of(agent_dir)
    if where.is_local:
        return where.local_path
    metadata = read_metadata(where)
    expected = metadata.content_hash

    def whole(copy: Path) -> None:
        """The copy is the model the metadata first read named: a re-export racing the download is refused."""
        copied = read_metadata(copy)
        if copied.content_hash != expected:
            raise DataError(f"{where}: changed while it was downloaded (re-exported?); try again")
        if content_hash(copy / copied.module_dir) != expected:
            raise DataError(f"{where}: module files do not match the content hash in {METADATA}")

    return _cached(where, f"{metadata.agent}-{expected[:16]}", check=whole)


def _cached(source: Location, name: str, check=None) -> Path:
    """``cache_dir()/name``, downloaded from ``source`` unless there already; renamed into place only when whole
    (and, with ``check``, checked)."""
    target = cache_dir() / name
    if target.is_dir():
        return target
    staging = target.with_name(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        source.download(staging)
        if check is not None:
            check(staging)
        staging.rename(target)
    except OSError as exc:
        if not target.is_dir():  # else another process finished the same copy first
            raise DataError(f"{source}: cannot be downloaded ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_policy(agent_dir: str | Path | Location, *, verify: bool = True) -> tuple[Policy, ModelMetadata]:
    """Load an exported policy (no Ray cluster needed) and its metadata, from a folder or a storage URI.

    :raises DataError: missing or corrupt files (naming the file and field), or module files that do not match the
        content hash in the metadata.
    """
    agent_dir = local_copy(agent_dir).resolve()
    metadata = read_metadata(agent_dir)
    module_dir = agent_dir / metadata.module_dir
    if not module_dir.is_dir():
        raise DataError(f"{agent_dir}: no {metadata.module_dir}/ folder beside {METADATA}")
    if verify and content_hash(module_dir) != metadata.content_hash:
        raise DataError(f"{agent_dir}: module files do not match the content hash in {METADATA}")
    return _policy(module_dir, metadata), metadata


CHECKPOINT_MODULE = ("learner_group", "learner", "rl_module", "default_policy")  # in an RLlib algorithm checkpoint


def load_final_policy(metadata: ModelMetadata) -> Policy:
    """The module the training run ended with (its last algorithm checkpoint, ``metadata.source_checkpoint``),
    beside the selected one that was exported: to check that selection did not pick a worse module.

    :raises DataError: the checkpoint is gone or does not hold a loadable module.
    """
    source = Location.of(metadata.source_checkpoint)
    for part in CHECKPOINT_MODULE:
        source = source / part
    if not source.is_dir():
        raise DataError(f"{source}: no final module (the run's checkpoint was moved or deleted)")
    if source.is_local:
        return _policy(source.local_path, metadata)
    return _policy(_cached(source, f"{metadata.agent}-{metadata.content_hash[:16]}-final"), metadata)


def _policy(module_dir: Path, metadata: ModelMetadata) -> Policy:
    """The module saved in ``module_dir``, in eval mode, with the action map of ``metadata``'s env."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    try:
        module = RLModule.from_checkpoint(str(module_dir))
    except Exception as exc:  # RLlib raises what torch, pickle or pyarrow raise on a damaged checkpoint
        raise DataError(f"{module_dir}: not a loadable RLModule checkpoint ({type(exc).__name__}: {exc})") from None
    module.eval()
    config = metadata.env_config
    action_map = ActionMap.from_config(config, len(metadata.assets))
    if metadata.module.kind == "asset_shared":  # runs on any number of assets: an action map per K
        return Policy(module, action_map, layout=metadata.module.features.asset_layout, env_config=config)
    return Policy(module, action_map)

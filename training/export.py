"""The exported-policy format (``models/<agent>/``) and its registry: written atomically, loaded without Ray.

    models/<agent>/module/          RLModule checkpoint, inference-only (RLModule.from_checkpoint)
    models/<agent>/metadata.json    agent, algorithm, env config, observation spec, assets, data ranges,
                                    validation metrics, created_at, source checkpoint, content hash, and the
                                    reproducibility record (seed, data hash, resolved config, git commit, versions)
    models/registry.json            every agent's headline numbers and the best one by the validation metric

A model folder is assembled under a temporary name and renamed into place, so a crash never leaves half a model
where a loader would find it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from envs.actions import ActionMap
from envs.config import EnvConfig, parse_config
from envs.errors import DataError
from envs.features import feature_names, observation_size
from envs.market import MarketData, Split
from training.policy import Policy

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODULE_DIR = "module"
METADATA = "metadata.json"
REGISTRY = "registry.json"


def content_hash(module_dir: Path) -> str:
    """SHA-256 over every file of the module folder (relative path and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(module_dir).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(module_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def library_versions() -> dict[str, str]:
    import gymnasium
    import ray
    import torch

    return {
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
    }


def _split_record(market: MarketData, split: Split) -> dict[str, Any]:
    return {"first": str(market.dates[split.first]), "last": str(market.dates[split.last]), "days": split.n_days}


def export_policy(
    module_source: str | Path,
    models_dir: str | Path,
    *,
    agent: str,
    algorithm: str,
    env_config: EnvConfig,
    market: MarketData,
    splits: dict[str, Split],
    validation: dict[str, float],
    source_checkpoint: str,
    seed: int,
    resolved_config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Copy an RLModule checkpoint folder into ``models_dir/agent`` with its metadata, atomically.

    :param module_source: folder written by ``RLModule.save_to_path`` (e.g. a run's ``best_module`` or a
        checkpoint's ``learner_group/learner/rl_module/default_policy``).
    :returns: the agent folder.
    """
    module_source = Path(module_source)
    if not any(module_source.glob("module_state*")):
        raise DataError(f"{module_source}: not an RLModule checkpoint (no module_state file)")
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".{agent}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        shutil.copytree(module_source, staging / MODULE_DIR)
        extras = tuple(env_config.data.extra_columns) if env_config.observe_extras else ()
        data_path = env_config.data.path
        metadata = {
            "format_version": FORMAT_VERSION,
            "agent": agent,
            "algorithm": algorithm,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "assets": list(market.assets),
            "env_config": env_config.model_dump(mode="json"),
            "observation": {
                "size": observation_size(market.n_assets, env_config.window_days, len(extras)),
                "window_days": env_config.window_days,
                "vol_window_days": env_config.vol_window_days,
                "log_volatility": env_config.log_volatility,
                "extras": list(extras),
                "names": feature_names(market.assets, env_config.window_days, extras, env_config.log_volatility),
            },
            "action": {"mode": env_config.action_mode, "map": env_config.continuous_map, "grid_steps": env_config.grid_steps},
            "data": {
                "source": market.source,
                "fingerprint": market.fingerprint(),
                "file_sha256": file_hash(data_path) if data_path else None,
                "train": _split_record(market, splits["train"]),
                "validation": _split_record(market, splits["validation"]),
            },
            "validation": validation,
            "source_checkpoint": str(source_checkpoint),
            "content_hash": content_hash(staging / MODULE_DIR),
            "reproducibility": {
                "seed": seed,
                "resolved_config": resolved_config,
                "git_commit": git_commit(),
                "versions": library_versions(),
            },
            **(extra or {}),
        }
        (staging / METADATA).write_text(json.dumps(metadata, indent=1, default=str))
        target = models_dir / agent
        retired = models_dir / f".{agent}.{uuid.uuid4().hex[:8]}.old"
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported %s (%s) to %s", agent, algorithm, target.resolve())
    update_registry(models_dir)
    return target


def agent_dirs(models_dir: str | Path) -> list[Path]:
    """Exported agents under ``models_dir`` (folders with ``metadata.json``; in-progress ``.tmp``/``.old`` excluded)."""
    return sorted(p.parent for p in Path(models_dir).glob(f"*/{METADATA}") if not p.parent.name.startswith("."))


def read_metadata(agent_dir: str | Path) -> dict[str, Any]:
    path = Path(agent_dir) / METADATA
    if not path.is_file():
        raise DataError(f"{agent_dir}: not an exported policy (no {METADATA})")
    return json.loads(path.read_text())


def load_policy(agent_dir: str | Path, *, verify: bool = True) -> tuple[Policy, dict[str, Any]]:
    """Load an exported policy (no Ray cluster needed) and its metadata.

    :raises DataError: missing files, or a module whose content hash does not match its metadata.
    """
    from ray.rllib.core.rl_module.rl_module import RLModule

    agent_dir = Path(agent_dir).resolve()
    metadata = read_metadata(agent_dir)
    module_dir = agent_dir / MODULE_DIR
    if verify and content_hash(module_dir) != metadata["content_hash"]:
        raise DataError(f"{agent_dir}: module files do not match the content hash in {METADATA}")
    module = RLModule.from_checkpoint(str(module_dir))
    module.eval()
    env_config = parse_config(EnvConfig, metadata["env_config"], where=f"{agent_dir}/{METADATA}: env_config")
    return Policy(module, ActionMap.from_config(env_config, len(metadata["assets"]))), metadata


def update_registry(models_dir: str | Path, metric: str = "log_growth") -> dict[str, Any]:
    """Rewrite ``models/registry.json`` from the agents' metadata; the best agent has the highest validation metric."""
    models_dir = Path(models_dir)
    agents = {}
    for agent_dir in agent_dirs(models_dir):
        meta = read_metadata(agent_dir)
        agents[meta["agent"]] = {
            "algorithm": meta["algorithm"],
            "content_hash": meta["content_hash"],
            "created_at": meta["created_at"],
            "validation": meta["validation"],
        }
    scored = {name: a["validation"].get(metric) for name, a in agents.items() if a["validation"].get(metric) is not None}
    registry = {
        "metric": f"validation/{metric}",
        "best": max(scored, key=scored.get) if scored else None,
        "agents": agents,
    }
    tmp = models_dir / f".{REGISTRY}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(registry, indent=1))
    tmp.replace(models_dir / REGISTRY)
    return registry

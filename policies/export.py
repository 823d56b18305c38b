"""Writing the exported-policy format (``policies.format``) to a folder or a storage URI (``core.storage``).

A model folder is assembled locally first. On a local disk it is renamed into place, so a crash never leaves half a
model where a loader would find it. In an object store, where nothing renames atomically, the module is uploaded to
``module-<hash prefix>/`` beside the old one and the new ``metadata.json``, written whole and last, names it; the old
module is deleted after. Loaders follow ``metadata.json`` and check the module against its content hash, so a crash
mid-upload leaves the old model in place, never half of the new one. ``registry.json`` is rewritten from the agents' metadata after every export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import platform
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError
from core.storage import Location
from envs.config import EnvConfig
from envs.features import feature_names, observation_size
from envs.market import MarketData
from envs.splits import Split
from policies.format import (
    FORMAT_VERSION,
    METADATA,
    MODULE_DIR,
    REGISTRY,
    SELECTION_METRIC,
    GateRecord,
    ModelMetadata,
    Registry,
    agent_dirs,
    content_hash,
    read_metadata,
)
from policies.module_spec import FeatureSpec, ModuleSpec

log = logging.getLogger(__name__)


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
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
    models_dir: str | Path | Location,
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
    module_kind: str | None = None,
) -> Location:
    """Copy an RLModule checkpoint folder into ``models_dir/agent`` with its metadata, atomically.

    :param module_source: local folder written by ``RLModule.save_to_path`` (e.g. a run's ``best_module`` or a
        checkpoint's ``learner_group/learner/rl_module/default_policy``).
    :param models_dir: a folder or a storage URI (``s3://bucket/models``).
    :param module_kind: ``mlp`` or ``asset_shared``; default the ``model.kind`` of ``resolved_config`` (the
        ``TrainConfig``), else ``mlp``.
    :returns: the agent folder.
    """
    module_source = Path(module_source)
    if not any(module_source.glob("module_state*")):
        raise DataError(f"{module_source}: not an RLModule checkpoint (no module_state file)")
    models = Location.of(models_dir)
    if models.is_local:
        models.local_path.mkdir(parents=True, exist_ok=True)
        parent = models.local_path  # staged beside its target, so that a rename puts it in place
    else:
        parent = Path(tempfile.mkdtemp(prefix="rlportfolio-export-"))
    staging = parent / f".{agent}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        shutil.copytree(module_source, staging / MODULE_DIR)
        extras = tuple(env_config.data.extra_columns) if env_config.observe_extras else ()
        regime_model = env_config.regimes.model
        n_regimes = len(regime_model.transition) if env_config.observe_regimes and regime_model is not None else 0
        base = env_config.policy.base
        data_path = env_config.data.path
        kind = module_kind or (resolved_config.get("model") or {}).get("kind", "mlp")
        module = ModuleSpec.model_validate({"kind": kind, "features": FeatureSpec.of_env(env_config, n_regimes)})
        metadata = ModelMetadata.model_validate(
            {
                "format_version": FORMAT_VERSION,
                "agent": agent,
                "algorithm": algorithm,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "assets": list(market.assets),
                "env_config": env_config.model_dump(mode="json"),
                "observation": {
                    "size": observation_size(
                        market.n_assets, env_config.window_days, len(extras), n_regimes, base != "none"
                    ),
                    "window_days": env_config.window_days,
                    "vol_window_days": env_config.vol_window_days,
                    "log_volatility": env_config.log_volatility,
                    "extras": list(extras),
                    "n_regimes": n_regimes,
                    "regime_window_days": env_config.regimes.window_days if n_regimes else 0,
                    "base": base,
                    "names": feature_names(
                        market.assets, env_config.window_days, extras, env_config.log_volatility, n_regimes, base
                    ),
                },
                "module": module.model_dump(mode="json"),
                "action": {
                    "mode": env_config.action_mode,
                    "map": env_config.continuous_map,
                    "grid_steps": env_config.grid_steps,
                    "discrete": env_config.discrete_actions,
                    "factored_levels": (
                        env_config.factored_levels if env_config.discrete_actions == "factored" else None
                    ),
                },
                "data": {
                    "source": market.source,
                    "fingerprint": market.fingerprint(),
                    "file_sha256": file_hash(data_path) if data_path else None,
                    "train": _split_record(market, splits["train"]),
                    "validation": _split_record(market, splits["validation"]),
                },
                "validation": validation,
                "source_checkpoint": str(source_checkpoint),
                "content_hash": (digest := content_hash(staging / MODULE_DIR)),
                "module_dir": MODULE_DIR if models.is_local else f"{MODULE_DIR}-{digest[:12]}",
                "reproducibility": {
                    "seed": seed,
                    "resolved_config": resolved_config,
                    "git_commit": git_commit(),
                    "versions": library_versions(),
                },
                **(extra or {}),
            }
        )
        (staging / METADATA).write_text(json.dumps(metadata.model_dump(mode="json"), indent=1))
        target = models / agent
        if models.is_local:
            _replace_local(staging, target.local_path)
        else:
            _upload(staging, target)
    except BaseException:
        if not models.is_local:  # the old model may be gone by now: the registry must not list it
            update_registry(models)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not models.is_local:
            shutil.rmtree(parent, ignore_errors=True)
    log.info("exported %s (%s) to %s", agent, algorithm, target)
    update_registry(models)
    return target


def _replace_local(staging: Path, target: Path) -> None:
    retired = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def _upload(staging: Path, target: Location) -> None:
    """The new module goes up beside the old one, then ``metadata.json``, written whole, switches to it, then the
    old module goes: at every moment the remote folder holds a whole model, the old one or the new."""
    text = (staging / METADATA).read_text()
    module = target / json.loads(text)["module_dir"]
    module.delete()  # a partial upload of this very module, cut off earlier
    module.upload(staging / MODULE_DIR)
    (target / METADATA).write_text(text)
    for old in target.children():
        if old.name.startswith(MODULE_DIR) and old.name != module.name:
            old.delete()


def update_registry(
    models_dir: str | Path | Location, metric: str = SELECTION_METRIC, gate: GateRecord | None = None
) -> Registry:
    """Rewrite ``models/registry.json`` from the agents' metadata; the best agent has the highest validation
    ``metric``. An agent whose metadata cannot be read is left out, with a warning naming the problem.

    ``gate``: the promotion gate's decision on these agents (``training.gate``), recorded with ``promoted``; without
    one (after an export) the registry promotes nothing until a gate runs again."""
    models = Location.of(models_dir)
    agents = {}
    for agent_dir in agent_dirs(models):
        try:
            meta = read_metadata(agent_dir)
        except DataError as exc:
            log.warning("registry: leaving out %s (%s)", agent_dir.name, exc)
            continue
        agents[meta.agent] = {
            "algorithm": meta.algorithm,
            "content_hash": meta.content_hash,
            "created_at": meta.created_at,
            "validation": meta.validation,
        }
    scored = {name: a["validation"][metric] for name, a in agents.items() if metric in a["validation"]}
    registry = Registry(
        metric=f"validation/{metric}",
        best=max(scored, key=scored.get) if scored else None,
        agents=agents,
        promoted=None if gate is None else gate.promoted,
        gate=gate,
    )
    text = json.dumps(registry.model_dump(mode="json"), indent=1)
    if models.is_local:  # whole or not at all: a reader (the server) never sees half a registry
        staging = models.local_path / f".{REGISTRY}.{uuid.uuid4().hex[:8]}.tmp"
        staging.write_text(text)
        staging.replace(models.local_path / REGISTRY)
    else:
        (models / REGISTRY).write_text(text)
    return registry

"""Loading an exported policy for inference, without a Ray cluster: the module checked against its content hash,
its metadata checked against the format (``policies.format``)."""

from __future__ import annotations

from pathlib import Path

from core.errors import DataError
from envs.actions import ActionMap
from policies.format import (
    METADATA,
    MODULE_DIR,
    ModelMetadata,
    content_hash,
    read_metadata,
)
from policies.policy import Policy


def load_policy(agent_dir: str | Path, *, verify: bool = True) -> tuple[Policy, ModelMetadata]:
    """Load an exported policy (no Ray cluster needed) and its metadata.

    :raises DataError: missing or corrupt files (naming the file and field), or module files that do not match the
        content hash in the metadata.
    """
    agent_dir = Path(agent_dir).resolve()
    metadata = read_metadata(agent_dir)
    module_dir = agent_dir / MODULE_DIR
    if not module_dir.is_dir():
        raise DataError(f"{agent_dir}: no {MODULE_DIR}/ folder beside {METADATA}")
    if verify and content_hash(module_dir) != metadata.content_hash:
        raise DataError(f"{agent_dir}: module files do not match the content hash in {METADATA}")
    return _policy(module_dir, metadata), metadata


CHECKPOINT_MODULE = ("learner_group", "learner", "rl_module", "default_policy")  # in an RLlib algorithm checkpoint


def load_final_policy(metadata: ModelMetadata) -> Policy:
    """The module the training run ended with (its last algorithm checkpoint, ``metadata.source_checkpoint``),
    beside the selected one that was exported: to check that selection did not pick a worse module.

    :raises DataError: the checkpoint is gone or does not hold a loadable module.
    """
    module_dir = Path(metadata.source_checkpoint).joinpath(*CHECKPOINT_MODULE)
    if not module_dir.is_dir():
        raise DataError(f"{module_dir}: no final module (the run's checkpoint was moved or deleted)")
    return _policy(module_dir, metadata)


def _policy(module_dir: Path, metadata: ModelMetadata) -> Policy:
    """The module saved in ``module_dir``, in eval mode, with the action map of ``metadata``'s env."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    try:
        module = RLModule.from_checkpoint(str(module_dir))
    except Exception as exc:  # RLlib raises what torch, pickle or pyarrow raise on a damaged checkpoint
        raise DataError(f"{module_dir}: not a loadable RLModule checkpoint ({type(exc).__name__}: {exc})") from None
    module.eval()
    return Policy(module, ActionMap.from_config(metadata.env_config, len(metadata.assets)))

"""What the app's deploys set (``ExperimentSettings``, the ingress ``user_config``), the experiment config they mean
against the deployed agents (``resolve_settings``), the experiment's key, and what ingress replicas route by
(``Routing``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from core.config import FrozenConfig, parse_config
from core.errors import ConfigError
from experiments.buckets import normalise
from experiments.config import ExperimentConfig


class ExperimentSettings(FrozenConfig):
    """The ingress ``user_config``: what ``serve deploy`` sets (``configs/serve.yaml``)."""

    experiment: ExperimentConfig | None = Field(
        default=None, description="the experiment; default a fixed split over `split`'s arms, the fallback as control"
    )
    split: dict[str, float] | None = Field(default=None, description="agent -> share (routing fixed)")
    shadow: str | None = Field(default=None, description="agent evaluated on every request but never returned")


@dataclass(frozen=True)
class Routing:
    """What an ingress replica routes by; ``version`` grows with every decision."""

    experiment: str
    version: int
    layout: dict[str, list[list[float]]]
    shadow: str | None
    arms: tuple[str, ...]


def experiment_key(config: ExperimentConfig, versions: Mapping[str, str] | None = None) -> str:
    """``name-<hash>`` of the experiment config, its split aside (a split change is a decision, not a new
    experiment), and of its arms' model versions (new models under the same names are another experiment); the salt
    of client hashing, so another experiment reshuffles clients."""
    body = {
        **config.model_dump(mode="json", exclude={"split"}),
        "models": {arm: (versions or {}).get(arm, "") for arm in config.arms},
    }
    return f"{config.name}-{hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]}"


def resolve_settings(
    settings: Mapping[str, Any] | ExperimentSettings,
    known: set[str],
    fallback: str,
    default_split: Mapping[str, float],
) -> tuple[ExperimentConfig, ExperimentSettings]:
    """The experiment config the settings mean, checked against the deployed agents (``ConfigError`` naming the
    field): ``experiment`` as given (``split`` overriding its split), or a fixed split over ``split``'s arms (default
    ``default_split``) with ``fallback`` as the control when it is one of them, else the first arm by name.

    An experiment is its set of arms: a split that leaves an arm out starts another experiment, one that gives it
    weight 0 keeps the experiment (and its statistics) going."""
    parsed = parse_config(ExperimentSettings, settings, where="user_config")
    if parsed.shadow is not None and parsed.shadow not in known:
        raise ConfigError(f"shadow: unknown agent '{parsed.shadow}'; deployed agents are {sorted(known)}")
    if parsed.split is not None:
        unknown = sorted(set(parsed.split) - known)
        if unknown:
            raise ConfigError(f"split: unknown agent(s) {unknown}; deployed agents are {sorted(known)}")
        normalise(parsed.split)  # a ConfigError naming the split when its weights are bad
    if parsed.experiment is not None:
        config = parsed.experiment
        if parsed.split is not None:
            try:
                config = ExperimentConfig.model_validate({**config.model_dump(), "split": parsed.split})
            except ValueError as exc:
                raise ConfigError(f"split: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}") from None
    else:
        split = dict(parsed.split or default_split)  # zero weights included: an arm kept at 0 stays an arm
        if not any(w > 0 for w in split.values()):
            raise ConfigError("split: needs at least one agent with a positive weight")
        control = fallback if fallback in split else sorted(split)[0]
        config = ExperimentConfig(
            control=control, challengers=tuple(sorted(set(split) - {control})), routing="fixed", split=split
        )
    unknown = sorted(set(config.arms) - known)
    if unknown:
        raise ConfigError(f"experiment: unknown arm(s) {unknown}; deployed agents are {sorted(known)}")
    return config, parsed

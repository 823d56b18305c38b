"""What a sweep would place where, without running it: each trial's resource bundles as RLlib asks Tune for them
(``Algorithm.default_resource_request``), and how those trials fit the node types of a cluster launcher config.

    python -m training.sweep --config configs/sweep_gpu.yaml --dry-run --cluster cluster.yaml

Works on a machine without the GPUs the sweep asks for (nothing is built or run). A trial is one placement group:
RLlib's first bundle is the trial's main process (the Tune trainable that drives the algorithm; it holds the
learner itself when ``num_learners`` is 0), then one bundle per remote env runner, then one per learner. Tune packs
the bundles (``PACK``): on one node when they fit, spread over several otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core.config import load_yaml
from core.errors import ConfigError
from training.config import TrainConfig


class Bundle(BaseModel):
    role: str = Field(description="main (the trial's driver process), env_runner or learner")
    resources: dict[str, float]


class TrialPlacement(BaseModel):
    algo: str
    strategy: str
    bundles: list[Bundle]
    total: dict[str, float] = Field(description="what one trial holds in all")


class NodeFit(BaseModel):
    node_type: str
    resources: dict[str, float]
    max_workers: int
    trials_per_node: int = Field(description="whole trials one node of this type holds (0: none fit)")


class SweepPlacement(BaseModel):
    algo: str
    trial: TrialPlacement
    concurrent_trials: int
    nodes: list[NodeFit]
    nodes_needed: dict[str, int] = Field(description="nodes of each type that hold the concurrent trials")
    fits: bool = Field(description="the cluster's max_workers can hold every concurrent trial at once")


def trial_placement(base: TrainConfig) -> TrialPlacement:
    """The bundles RLlib asks Tune for, for one trial of ``base`` (no Ray, no GPU needed)."""
    from training.algorithms import build_algorithm_config

    config = build_algorithm_config(base, per_trial=True)
    request = config.algo_class.default_resource_request(config)
    bundles = [dict(b) for b in request.bundles]
    n_runners, n_learners = int(config.num_env_runners or 0), int(config.num_learners or 0)
    roles = ["main"] + ["env_runner"] * n_runners + ["learner"] * n_learners
    if len(roles) != len(bundles):  # evaluation runners or a newer RLlib's layout: name them generically
        roles = ["main"] + [f"bundle {i}" for i in range(1, len(bundles))]
    total: dict[str, float] = {}
    for bundle in bundles:
        for key, value in bundle.items():
            total[key] = total.get(key, 0.0) + float(value)
    return TrialPlacement(
        algo=base.algo,
        strategy=request.strategy,
        bundles=[Bundle(role=r, resources={k: float(v) for k, v in b.items() if v}) for r, b in zip(roles, bundles)],
        total={k: v for k, v in total.items() if v},
    )


def cluster_node_types(path: str | Path) -> dict[str, tuple[dict[str, float], int]]:
    """``node type -> (resources, max_workers)`` from a cluster launcher YAML; each type must state its resources."""
    raw = load_yaml(path)
    types = raw.get("available_node_types")
    if not isinstance(types, Mapping) or not types:
        raise ConfigError(f"{path}: available_node_types: missing (a Ray cluster launcher config has it)")
    out = {}
    for name, spec in types.items():
        resources = (spec or {}).get("resources")
        if not isinstance(resources, Mapping) or "CPU" not in resources:
            raise ConfigError(f"{path}: available_node_types.{name}.resources: give CPU (and GPU) for the dry run")
        out[name] = ({k: float(v) for k, v in resources.items()}, int(spec.get("max_workers", 0)))
    return out


def trials_per_node(trial: TrialPlacement, resources: Mapping[str, float]) -> int:
    """Whole trials a node holds when each trial's bundles are packed onto it."""
    fits = [math.floor(resources.get(k, 0.0) / v + 1e-9) for k, v in trial.total.items() if v > 0]
    return max(0, min(fits)) if fits else 0


def sweep_placement(
    base: TrainConfig, concurrent: int, node_types: Mapping[str, tuple[dict[str, float], int]]
) -> SweepPlacement:
    trial = trial_placement(base)
    nodes = [
        NodeFit(node_type=name, resources=res, max_workers=most, trials_per_node=trials_per_node(trial, res))
        for name, (res, most) in node_types.items()
    ]
    needed: dict[str, int] = {}
    left = concurrent
    for node in sorted(nodes, key=lambda n: -n.trials_per_node):  # fill the roomiest type first
        if left <= 0 or node.trials_per_node == 0:
            continue
        count = min(node.max_workers, math.ceil(left / node.trials_per_node))
        if count:
            needed[node.node_type] = count
            left -= count * node.trials_per_node
    return SweepPlacement(
        algo=base.algo, trial=trial, concurrent_trials=concurrent, nodes=nodes, nodes_needed=needed, fits=left <= 0
    )


def placement_text(placements: list[SweepPlacement]) -> str:
    """The dry run in a few lines per algorithm."""
    lines = []
    for p in placements:
        lines.append(f"{p.algo}: one trial = {p.trial.strategy} placement group of {len(p.trial.bundles)} bundles")
        for bundle in p.trial.bundles:
            res = ", ".join(f"{v:g} {k}" for k, v in sorted(bundle.resources.items()))
            lines.append(f"  {bundle.role:<11} {res}")
        lines.append("  in all      " + ", ".join(f"{v:g} {k}" for k, v in sorted(p.trial.total.items())))
        for node in p.nodes:
            res = ", ".join(f"{v:g} {k}" for k, v in sorted(node.resources.items()))
            lines.append(
                f"  node type {node.node_type} ({res}; up to {node.max_workers}): {node.trials_per_node} trial(s) each"
            )
        needed = ", ".join(f"{n} x {t}" for t, n in p.nodes_needed.items()) or "none"
        verdict = "fits" if p.fits else "does NOT fit within max_workers (trials will queue)"
        lines.append(f"  {p.concurrent_trials} concurrent trials need {needed}: {verdict}")
    return "\n".join(lines)


def placement_json(placements: list[SweepPlacement]) -> dict[str, Any]:
    return {p.algo: p.model_dump() for p in placements}

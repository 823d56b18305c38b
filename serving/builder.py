"""``build_app``: the Serve application for a models folder, from typed arguments (``AppArgs``, what
``configs/serve.yaml``'s ``args`` hold). Every setting is checked here, before anything is deployed, with a message
naming it.
"""

# No "from __future__ import annotations": Serve converts a builder's dict argument only when its annotation is a
# pydantic class at run time (ray.serve._private.api.call_user_app_builder_with_args_if_necessary).

import hashlib
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import Field
from ray import serve

from core.config import FrozenConfig, parse_config
from core.errors import ConfigError
from core.storage import Location
from envs.config import RegimeParams
from experiments.config import ExperimentConfig
from experiments.consistency import Expectation
from experiments.experiment import check_expectations
from experiments.log_schema import DEFAULT_URL
from experiments.settings import resolve_settings
from policies.format import agent_dirs, read_metadata, read_registry
from quant.registry import BASELINES, ROUTABLE, BaselinesConfig
from serving.agents import BaselineAgent, policy_info
from serving.deployments import AgentDeployment, StatsStore
from serving.ingress import Ingress


class AppArgs(FrozenConfig):
    """The application's arguments (``configs/serve.yaml``: ``applications[].args``)."""

    models_dir: str = Field(
        default="models",
        description="folder or storage URI (s3://bucket/models) of exported agents (<agent>/metadata.json)",
    )
    split: dict[str, float] | None = Field(
        default=None, description="agent -> traffic weight; default equal over the RL agents"
    )
    shadow: str | None = Field(default=None, description="agent evaluated on every request but never returned")
    experiment: ExperimentConfig | None = Field(
        default=None,
        description="the A/B experiment (control, challengers, routing fixed|ramp|thompson, guardrails); default a "
        "fixed split over `split`'s arms",
    )
    experiment_log: str = Field(
        default=DEFAULT_URL,
        description="SQLAlchemy URL of the durable experiment log (relative SQLite paths resolve "
        "against the directory the app is built in)",
    )
    baselines: list[str] = Field(
        default=["equal_weight", "growth_optimal"], description="classical baselines, routable like agents"
    )
    fallback: str = Field(default="equal_weight", description="the last-resort arm when the routed ones fail")
    agent_num_cpus: float = Field(default=0.25, gt=0, description="CPUs per agent replica (fractional on a laptop)")
    agent_autoscaling: dict[str, Any] | None = Field(
        default=None, description="a Serve autoscaling_config for agent deployments"
    )
    ingress_replicas: int = Field(
        default=1, ge=1, strict=True, description="FastAPI ingress replicas; they share one StatsStore"
    )
    token_env: str = Field(default="SERVE_API_TOKEN", description="environment variable holding the bearer token")
    access_log: bool = Field(default=False, description="Serve's per-request access log in every replica (costly)")


def replica_logging(access_log: bool = False) -> dict[str, Any]:
    """Serve ``logging_config`` for this app's replicas: warnings and errors, and the per-request access log only when
    asked for. Serve builds an access-log record for every call in every replica it crosses (about 3% of an agent
    replica's Python time at concurrency 1, by py-spy); request counts, latency and errors per agent are in the Prometheus
    metrics and ``/ab/stats`` either way."""
    return {"enable_access_log": access_log, "log_level": "INFO" if access_log else "WARNING"}


def discover(models_dir: str | Path) -> dict[str, Location]:
    """The exported agents in ``models_dir``, a folder or a storage URI every replica's node can read."""
    found = {d.name: d for d in agent_dirs(models_dir)}
    if not found:
        raise ConfigError(
            f"{models_dir}: no exported agents (expected <agent>/metadata.json); train some with make demo"
        )
    return found


def carried_regime_model(agent_dirs: Iterable[Location]) -> tuple[RegimeParams | None, int]:
    """The fitted regime model an agent's metadata carries (the first one), and its filter window, for
    ``regime_growth``; ``(None, 0)`` when no agent observes regimes or tilts ``regime_growth``."""
    for agent_dir in agent_dirs:
        config = read_metadata(agent_dir).env_config
        if (config.observe_regimes or config.base_needs_regimes) and config.regimes.model is not None:
            return config.regimes.model, config.regimes.window_days
    return None, 0


def agents_cost_bps(agent_dirs: Iterable[Location]) -> float:
    """The proportional cost the agents trained with, which the app charges every scored agent's turnover (one cost:
    a paired comparison under two costs would not be a comparison); 10 bps with no RL agent."""
    costs = {d.name: read_metadata(d).env_config.cost_bps for d in agent_dirs}
    if len(set(costs.values())) > 1:
        raise ConfigError(f"agents trained with different costs {costs} (cost_bps); serve them in separate apps")
    return next(iter(costs.values()), 10.0)


def validation_expectations(models_dir: str, infos: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each deployed agent's and baseline's validation distribution of daily paired differences to the gate's
    baseline, from the gate's record (``registry.json``); an agent re-exported since the gate has none."""
    registry = read_registry(models_dir)
    if registry is None or registry.gate is None or registry.gate.baseline not in infos:
        return {}
    gate = registry.gate
    out = {}
    for entry in gate.entries:
        if entry.daily_std is None or not entry.days or entry.name not in infos:
            continue
        if entry.kind == "agent" and entry.model_version != infos[entry.name].model_version:
            continue
        band = entry.daily_std_band or (None, None)
        out[entry.name] = {
            "baseline": gate.baseline,
            "mean": entry.difference,
            "std": entry.daily_std,
            "days": entry.days,
            "std_low": band[0],
            "std_high": band[1],
        }
    if out:  # the baseline against itself: identical every day
        out[gate.baseline] = {
            "baseline": gate.baseline,
            "mean": 0.0,
            "std": 0.0,
            "days": max(e["days"] for e in out.values()),
        }
    return out


def promoted_default(models_dir: str, agents: Iterable[str], baselines: list[str]) -> tuple[str | None, float | None]:
    """What the promotion gate (``training.gate``, ``registry.json``) decided to serve by default, and the
    ``regime_growth`` rate it chose on validation; ``(None, None)`` before any gate ran on these exports. A promoted
    baseline not listed in ``baselines`` is added to it."""
    registry = read_registry(models_dir)
    if registry is None or registry.gate is None:
        return None, None
    promoted = registry.gate.promoted
    if registry.gate.promoted_kind == "baseline" and promoted not in baselines:
        baselines.append(promoted)
    elif registry.gate.promoted_kind == "agent" and promoted not in set(agents):
        raise ConfigError(f"{models_dir}: registry.json promotes agent '{promoted}', which is not exported there")
    return promoted, registry.gate.regime_trade_rate


def build_app(args: AppArgs) -> serve.Application:
    """The application for ``args`` (an ``AppArgs``, or the dict of its fields).

    :raises ConfigError: a bad setting, named; :raises DataError: an agent's files cannot be read (named).
    """
    args = parse_config(AppArgs, args, where="app args")
    models_dir = args.models_dir
    agents = discover(models_dir)
    infos = {name: policy_info(path) for name, path in agents.items()}
    assets = {i.assets for i in infos.values()}
    if len(assets) != 1:
        raise ConfigError(
            f"{models_dir}: agents trade different assets ({sorted(assets)}); serve them in separate apps"
        )
    asset_list = next(iter(assets))
    closes_needed = max(i.closes_needed for i in infos.values())
    regimes, regime_window = carried_regime_model(agents.values())
    baselines = list(args.baselines)
    promoted, regime_rate = promoted_default(models_dir, agents, baselines)
    baseline_config = BaselinesConfig(regime_trade_rate=regime_rate)
    baseline_specs = {}
    for name in baselines:
        if name not in ROUTABLE:
            what = "cannot be served from prices alone" if name in BASELINES else "unknown baseline"
            raise ConfigError(f"baselines: {what} '{name}'; routable baselines are {list(ROUTABLE)}")
        if name in infos:
            raise ConfigError(f"baselines: '{name}' clashes with an exported agent of the same name")
        infos[name] = BaselineAgent(name, asset_list, closes_needed, regimes, regime_window, baseline_config).info
        baseline_specs[name] = {
            "regimes": None if regimes is None else regimes.model_dump(),
            "regime_window_days": regime_window,
            "config": baseline_config.model_dump(mode="json"),
        }
    fallback = args.fallback
    if fallback not in infos:
        raise ConfigError(f"fallback: '{fallback}' is not deployed (agents: {sorted(infos)})")
    # Without a split or an experiment the app serves what the gate promoted (an agent, or a baseline where no agent
    # beat the gate's baseline beyond luck); before any gate ran, every agent equally.
    default_split = (
        {promoted: 1.0} if promoted else {name: 1.0 for name, i in infos.items() if i.kind == "rl"} or {fallback: 1.0}
    )
    settings = {"experiment": args.experiment, "split": args.split, "shadow": args.shadow}
    # Fail here, with a clear message, not in a replica.
    config, _ = resolve_settings(settings, set(infos), fallback, default_split)
    expectations = validation_expectations(models_dir, infos)
    check_expectations(config, {n: Expectation(**e) for n, e in expectations.items()})
    settings = {k: (v.model_dump(mode="json") if isinstance(v, ExperimentConfig) else v) for k, v in settings.items()}
    log_url = absolute_sqlite(args.experiment_log)

    logging_config = replica_logging(args.access_log)
    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": args.agent_num_cpus}, "logging_config": logging_config}
    if args.agent_autoscaling:
        options["autoscaling_config"] = args.agent_autoscaling
    handles = {}
    for name, info in infos.items():
        spec = (
            {"kind": "rl", "path": agents[name].uri, "content_hash": info.content_hash}
            if info.kind == "rl"
            else {
                "kind": "baseline",
                "name": name,
                "assets": list(asset_list),
                "closes_needed": info.closes_needed,
                **baseline_specs[name],
            }
        )
        handles[name] = AgentDeployment.options(name=f"agent-{name}", **options).bind(spec)
    token = os.environ.get(args.token_env)
    token_sha256 = hashlib.sha256(token.encode()).hexdigest() if token else None
    store = StatsStore.options(logging_config=logging_config).bind(
        log_url, {n: i.model_version for n, i in infos.items()}, fallback, default_split, expectations
    )
    ingress = Ingress.options(num_replicas=args.ingress_replicas, user_config=settings, logging_config=logging_config)
    return ingress.bind(
        handles,
        store,
        {n: asdict(i) for n, i in infos.items()},
        fallback,
        token_sha256,
        log_url,
        agents_cost_bps(agents.values()),
    )


def absolute_sqlite(url: str) -> str:
    """``url`` with a relative SQLite path made absolute here, so every replica opens the same file; checked."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"experiment_log: '{url}' is not a database URL (e.g. sqlite:///runs/experiments.db)"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return parsed.set(database=str(Path(parsed.database).expanduser().resolve())).render_as_string(
            hide_password=False
        )
    return url

"""What a deployment serves: an exported RL policy or a classical baseline, behind one small interface.

Both turn a window of closes (``(T, K)``, oldest first) and the weights held into target weights. Features come
from ``envs.features.latest_observation``, the same code the env uses, so a served agent sees exactly what it
saw in training. An asset-shared agent whose features allow it (``policies.transfer``), and a baseline that needs no
fitted regime model, take closes of any ``K`` (``serving.universe`` decides which assets a request gets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, DataError
from core.storage import Location
from envs.bases import ResidualBase, observed_base
from envs.config import RegimeParams
from envs.features import latest_observation
from envs.regimes import model_from_params
from quant.regimes import latest_filter
from quant.registry import (
    BASELINES,
    DEFAULT_REGIME_WINDOW_DAYS,
    ROUTABLE,
    BaselinesConfig,
    closes_needed,
    make_baseline,
)
from quant.strategies import History


@dataclass(frozen=True)
class AgentInfo:
    name: str
    kind: str
    algorithm: str
    model_version: str
    content_hash: str | None
    assets: tuple[str, ...]
    closes_needed: int
    observation_size: int | None
    validation: dict[str, float] | None
    module_kind: str | None = None  # an RL agent's module: mlp or asset_shared; None for a baseline
    transfer: str | None = "it allocates the assets it was built for only"  # None: any assets; else why not


def policy_info(agent_dir: str | Path, meta=None) -> AgentInfo:
    """An exported agent's serving facts, from its metadata alone (no torch, no module); ``meta`` when already read."""
    from policies.format import read_metadata
    from policies.transfer import transfer_refusal

    meta = meta or read_metadata(agent_dir)
    if meta.observation.extras:
        raise ConfigError(
            f"{agent_dir}: agents that observe extra columns ({meta.observation.extras}) cannot be served from prices alone"
        )
    return AgentInfo(
        name=Location.of(agent_dir).name,
        kind="rl",
        algorithm=meta.algorithm,
        model_version=meta.model_version,
        content_hash=meta.content_hash,
        assets=tuple(meta.assets),
        closes_needed=meta.closes_needed,
        observation_size=meta.observation.size,
        validation=dict(meta.validation),
        module_kind=meta.module.kind,
        transfer=transfer_refusal(meta.module),
    )


class PolicyAgent:
    """An exported policy from ``models/<agent>/``."""

    def __init__(self, agent_dir: str | Path, content_hash: str | None = None) -> None:
        """:param content_hash: the model the app was built with; a replica (re)started after the folder was
        re-exported refuses to serve another one under the same name (redeploy to serve the new one)."""
        from policies.load import load_policy

        self.policy, meta = load_policy(agent_dir)
        if content_hash is not None and meta.content_hash != content_hash:
            raise DataError(
                f"{agent_dir}: holds model {meta.model_version}, not the {content_hash[:12]} this app was deployed "
                "with (re-exported since); deploy the app again to serve it"
            )
        self.info = policy_info(agent_dir, meta)
        self._window, self._vol_window = meta.observation.window_days, meta.observation.vol_window_days
        self._log_volatility = meta.observation.log_volatility
        # The regime model the agent was trained with travels in its metadata (checked there when it observes regimes
        # or tilts regime_growth), and so does its residual base, computed here from the posted closes as in training.
        config = meta.env_config
        carried = config.regimes.model if (config.observe_regimes or config.base_needs_regimes) else None
        model = None if carried is None else model_from_params(carried)
        self._regimes = model if config.observe_regimes else None
        self._regime_window = meta.observation.regime_window_days
        self._base = None if config.policy.base == "none" else ResidualBase(config, tuple(meta.assets), model)
        # A regime_growth base filtering as the observation does takes the request's filter instead of its own.
        self._base_takes_filter = self._base is not None and self._base.filters_with(self._regimes, self._regime_window)

    def observation(self, closes: np.ndarray, held: np.ndarray) -> np.ndarray:
        filtered = None
        if self._regimes is not None:
            filtered = latest_filter(self._regimes, closes, self._regime_window)
        base = None
        if self._base is not None:
            base = self._base.latest(closes, filtered if self._base_takes_filter else None)
        return latest_observation(
            closes,
            held,
            self._window,
            self._vol_window,
            log_volatility=self._log_volatility,
            regimes=self._regimes,
            regime_window_days=self._regime_window,
            base=base,
            filtered=filtered,
        )

    def weights_batch(self, closes: list[np.ndarray], held: list[np.ndarray]) -> list[np.ndarray]:
        """``N`` requests, one forward pass per number of assets among them: each request's ``(K,)`` weights.

        :raises ValueError: closes of other assets than the training ones for an agent that cannot allocate them."""
        n_assets = len(self.info.assets)
        if self.info.transfer is not None and any(c.shape[1] != n_assets for c in closes):
            raise ValueError(f"'{self.info.name}' allocates its {n_assets} training assets only: {self.info.transfer}")
        observations = [self.observation(c, h) for c, h in zip(closes, held)]
        return by_size(observations, len, lambda rows: self.policy.weights_batch(np.stack(rows)))

    def predict(self, observation: np.ndarray) -> tuple[Any, np.ndarray]:
        if observation.shape != (self.info.observation_size,):
            raise ValueError(f"observation must have {self.info.observation_size} entries, got {observation.shape[0]}")
        action = self.policy.actions(observation[None, :].astype(np.float32))[0]
        n_assets = len(self.info.assets)
        held = observation[-n_assets:].astype(np.float64)
        base = None if self._base is None else observed_base(observation, n_assets)
        return action, np.array(self.policy.action_map(action, held, base), dtype=np.float64)


def by_size(items: list[Any], size: Callable[[Any], int], decide: Callable[[list[Any]], Any]) -> list[np.ndarray]:
    """``decide`` (items of one ``size`` -> their ``(n, K)`` weights) over requests of possibly different sizes
    (numbers of assets): one call per size, each request's weights back in the order of ``items``."""
    groups: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(size(item), []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(items)
    for members in groups.values():
        for i, weights in zip(members, decide([items[i] for i in members]), strict=True):
            out[i] = np.asarray(weights)
    return out


def baseline_closes_needed(
    name: str,
    agents_need: int,
    regime_window_days: int = DEFAULT_REGIME_WINDOW_DAYS,
    config: BaselinesConfig | None = None,
) -> int:
    """Closes a served baseline needs: what the agents need, and what its decision reads (``quant.registry``: an
    estimated baseline's lookback + 1, ``regime_growth``'s regime window + 1), so it decides as its backtests do."""
    return max(agents_need, closes_needed(name, config, regime_window_days))


class BaselineAgent:
    """A routable classical strategy of ``quant.registry``, served like any agent (and the last-resort fallback):
    the registry's own decision function with the backtests' default parameters."""

    def __init__(
        self,
        name: str,
        assets: tuple[str, ...],
        agents_need: int,
        regimes: RegimeParams | None = None,
        regime_window_days: int = DEFAULT_REGIME_WINDOW_DAYS,
        config: BaselinesConfig | None = None,
    ) -> None:
        """:param agents_need: closes the RL agents of the app need; an estimated baseline may need more.
        :param regimes: the fitted regime model ``regime_growth`` filters with (an agent's, from its metadata), and
            ``regime_window_days`` the window that agent observes regimes over.
        :param config: the baselines' parameters (default: the backtests' defaults, a 252-day lookback)."""
        if name not in ROUTABLE:
            what = "cannot be served from prices alone" if name in BASELINES else "unknown baseline"
            raise ConfigError(f"baselines: {what} '{name}'; routable baselines are {list(ROUTABLE)}")
        if BASELINES[name].needs_regimes and regimes is None:
            raise ConfigError(
                f"baselines: {name} filters with a fitted regime model, and none of the served agents carries "
                "one; serve agents trained with observe_regimes (their metadata holds the model), or leave it out"
            )
        model = None if regimes is None else model_from_params(regimes)
        self.strategy = make_baseline(name, assets, config, model, regime_window_days)
        regime_filter = BASELINES[name].needs_regimes
        self.info = AgentInfo(
            name=name,
            kind="baseline",
            algorithm=name,
            model_version="baseline",
            content_hash=None,
            assets=tuple(assets),
            closes_needed=baseline_closes_needed(name, agents_need, regime_window_days, config),
            observation_size=None,
            validation=None,
            # Its decision reads the closes only, of any assets, unless it filters with the agents' regime model.
            transfer=f"it filters with the regime model fitted on {list(assets)}" if regime_filter else None,
        )

    def weights_batch(self, closes: list[np.ndarray], held: list[np.ndarray]) -> list[np.ndarray]:
        empty = np.zeros(0, dtype=np.float32)
        histories = [History(c, h, empty) for c, h in zip(closes, held)]
        return by_size(histories, lambda history: history.closes.shape[1], self.strategy.weights_batch)

    def predict(self, observation: np.ndarray) -> tuple[Any, np.ndarray]:
        raise ValueError(
            f"'{self.info.name}' is a classical baseline: it allocates from prices (/allocate), not observations"
        )

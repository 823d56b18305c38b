"""Branching Q-networks for DQN on factored actions (``envs.actions``: one level per asset, ``MultiDiscrete([L] * K)``).

Action branching (Tavakoli, Pardo & Kormushev 2018, "Action Branching Architectures for Deep Reinforcement
Learning"): one shared representation of the state, then one Q-value per level of each asset's branch, ``(B, K, L)``
outputs in place of one per joint action. The network grows with ``K * L``, not with the ``C(steps + K - 1, K - 1)``
points of the simplex grid (8,855 at 20 assets, 316,251 at 50). The greedy action is the argmax of every branch,
exploration is epsilon-greedy per branch, and ``training.factored_dqn`` learns it with the branching TD target.

Two bodies (``model_config["kind"]``):

- ``mlp``: an MLP trunk on the whole observation, then one linear layer to ``K * L`` values (one head per branch).
- ``asset_shared``: ``policies.asset_encoder.AssetSharedEncoder``, then one head shared by every asset giving its
  ``L`` values; nothing depends on ``K``, so a module trained on one universe runs on another of any size.

Dueling (``model_config["dueling"]``, DQN's ``dueling`` hyperparameter): ``Q_d(s, a) = V(s) + A_d(s, a) -
mean_a' A_d(s, a')`` with one state value from the trunk (or the assets' pooled embedding) shared by every branch,
the paper's dueling formulation.

Outputs follow RLlib's ``QNetAPI`` and DQN's column names (``qf_preds``, ``qf_next_preds``, ``qf_target_next_preds``),
so the module trains with RLlib's DQN machinery (target networks through ``TargetNetworkAPI``) and loads with
``RLModule.from_checkpoint`` wherever this package is importable (``policies.load``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, QNetAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.schedules.scheduler import Scheduler
from torch import nn

from envs.layout import AssetLayout
from policies.asset_encoder import ACTIVATIONS, AssetSharedEncoder

KINDS = ("mlp", "asset_shared")
DEFAULT_EPSILON = [(0, 1.0), (10_000, 0.05)]  # DQNConfig's default schedule


def mlp(width: int, hidden: Sequence[int], activation: str) -> tuple[nn.Sequential, int]:
    """Linear layers of ``hidden`` widths, each followed by ``activation``; the last width."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    return nn.Sequential(*layers), width


def dueling(advantages: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``(B, K, L)`` advantages and ``(B, 1)`` state values -> Q-values ``V + A - mean_levels(A)`` per branch."""
    return value.unsqueeze(-1) + advantages - advantages.mean(dim=-1, keepdim=True)


class MLPBranchingQ(nn.Module):
    """``(B, size)`` observations -> ``(B, K, L)`` Q-values: a trunk on the whole observation, one head per branch
    (one ``Linear`` to ``K * L`` outputs)."""

    def __init__(
        self, obs_size: int, n_assets: int, levels: int, hidden: Sequence[int], activation: str, use_dueling: bool
    ) -> None:
        super().__init__()
        self.n_assets, self.levels = n_assets, levels
        self.trunk, width = mlp(obs_size, hidden, activation)
        self.advantages = nn.Linear(width, n_assets * levels)
        self.value = nn.Linear(width, 1) if use_dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.trunk(obs)
        q = self.advantages(h).reshape(*obs.shape[:-1], self.n_assets, self.levels)
        return q if self.value is None else dueling(q, self.value(h))


class AssetSharedBranchingQ(nn.Module):
    """``(B, size)`` observations over any number ``K`` of assets -> ``(B, K, L)`` Q-values: the asset-shared
    encoder, then one head for every asset's branch (the state value, with dueling, from the pooled embedding)."""

    def __init__(
        self, layout: AssetLayout, levels: int, hidden: Sequence[int], activation: str, use_dueling: bool
    ) -> None:
        super().__init__()
        self.encoder = AssetSharedEncoder(layout, hidden, activation)
        width = self.encoder.out_features
        self.advantages = nn.Linear(width, levels)
        self.value = nn.Sequential(nn.Linear(width, width), ACTIVATIONS[activation](), nn.Linear(width, 1))
        if not use_dueling:
            self.value = None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        per_asset, pooled = self.encoder(obs)
        q = self.advantages(per_asset)
        return q if self.value is None else dueling(q, self.value(pooled))


def branch_levels(action_space: Any) -> tuple[int, int]:
    """``(K, L)`` of a ``MultiDiscrete([L] * K)`` action space.

    :raises ValueError: another space, or branches with different numbers of levels."""
    nvec = np.asarray(getattr(action_space, "nvec", ()))
    if nvec.ndim != 1 or len(nvec) == 0 or (nvec != nvec[0]).any():
        raise ValueError(
            f"a branching Q-module needs factored actions, MultiDiscrete([L] * K) (env discrete_actions: factored), "
            f"got {action_space}"
        )
    return len(nvec), int(nvec[0])


class FactoredQModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI, QNetAPI):
    """DQN's RLModule for factored actions: ``(B, K, L)`` Q-values, ``(B, K)`` actions.

    ``model_config``: ``kind`` (``mlp`` or ``asset_shared``), ``hidden`` (widths), ``activation``, ``levels`` (``L``,
    checked against the action space), ``layout`` (``AssetLayout.to_json()``, needed by ``asset_shared``), and what
    DQN's config adds: ``dueling``, ``double_q``, ``epsilon`` (a value or ``[[t, value], ...]`` schedule) and
    ``num_atoms`` (1 only: no distributional branches).
    """

    framework: str = "torch"

    def setup(self) -> None:
        config: Mapping[str, Any] = self.model_config or {}
        n_assets, levels = branch_levels(self.action_space)
        if int(config.get("levels", levels)) != levels:
            raise ValueError(f"model_config.levels is {config['levels']}, the action space has {levels} levels")
        if int(config.get("num_atoms", 1)) != 1:
            raise ValueError("num_atoms: distributional Q-learning is not supported by the branching module (1 only)")
        self.kind = config.get("kind", "mlp")
        activation = config.get("activation", "relu")
        if self.kind not in KINDS or activation not in ACTIVATIONS:
            raise ValueError(
                f"model_config: kind must be one of {KINDS} and activation one of {sorted(ACTIVATIONS)}, got "
                f"'{self.kind}' and '{activation}'"
            )
        hidden = [int(width) for width in config.get("hidden", config.get("fcnet_hiddens", (256, 256)))]
        self.levels = levels
        self.uses_dueling = bool(config.get("dueling", False))
        self.uses_double_q = bool(config.get("double_q", False))
        self.epsilon_schedule = Scheduler(config.get("epsilon", DEFAULT_EPSILON), framework=self.framework)
        obs_size = int(np.prod(self.observation_space.shape))
        if self.kind == "mlp":
            self.q_net: nn.Module = MLPBranchingQ(obs_size, n_assets, levels, hidden, activation, self.uses_dueling)
            return
        if "layout" not in config:
            raise ValueError("model_config: kind 'asset_shared' needs 'layout' (envs.layout.AssetLayout.to_json())")
        layout = AssetLayout.from_json(config["layout"])
        if layout.n_assets(obs_size) != n_assets:
            raise ValueError(f"the observation holds {layout.n_assets(obs_size)} assets, the action space {n_assets}")
        self.q_net = AssetSharedBranchingQ(layout, levels, hidden, activation, self.uses_dueling)

    # -- QNetAPI and TargetNetworkAPI -----------------------------------------------------------------------------

    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``{"qf_preds": (B, K, L)}`` for ``batch["obs"]`` of shape ``(B, size)``."""
        return {QF_PREDS: self.q_net(batch[Columns.OBS])}

    def make_target_networks(self) -> None:
        self._target_q_net = make_target_network(self.q_net)

    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.q_net, self._target_q_net)]

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self._target_q_net(batch[Columns.OBS])}

    def get_non_inference_attributes(self) -> list[str]:
        return ["_target_q_net"]

    # -- forward passes ----------------------------------------------------------------------------------------------

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """``(B, K)`` greedy levels: the argmax of every branch."""
        return {Columns.ACTIONS: self.compute_q_values(batch)[QF_PREDS].argmax(dim=-1)}

    def _forward_exploration(self, batch: dict[str, Any], t: int = 0, **kwargs) -> dict[str, Any]:
        """Epsilon-greedy per branch: each asset's level is uniform with probability epsilon (DQN's schedule over
        env steps ``t``), else greedy."""
        greedy = self._forward_inference(batch)[Columns.ACTIONS]
        self.epsilon_schedule.update(t)
        epsilon = self.epsilon_schedule.get_current_value()
        explore = torch.rand(greedy.shape, device=greedy.device) < epsilon
        uniform = torch.randint(0, self.levels, greedy.shape, device=greedy.device)
        return {Columns.ACTIONS: torch.where(explore, uniform, greedy)}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Q-values of the observations, the target network's of the next ones and, for double Q, the online
        network's of the next ones.

        Unlike RLlib's DQN module, which runs the online network once over observations and next observations
        concatenated, the next ones go through without a graph: the loss only takes their argmax, so backpropagating
        through them (zeros) doubled the backward pass, which is most of an update at 50 assets."""
        if self.inference_only:
            raise RuntimeError("an inference-only module cannot be trained (build it with inference_only=False)")
        next_obs = batch[Columns.NEXT_OBS]
        out: dict[str, Any] = {QF_PREDS: self.q_net(batch[Columns.OBS])}
        with torch.no_grad():
            if self.uses_double_q:
                out[QF_NEXT_PREDS] = self.q_net(next_obs)
            out[QF_TARGET_NEXT_PREDS] = self._target_q_net(next_obs)
        return out

"""Branching DQN: DQN on factored actions (``env.discrete_actions: factored``) with ``policies.factored_q``.

The learner (Tavakoli, Pardo & Kormushev 2018, section 3.2, "mean" TD target) learns every asset's branch
``Q_d(s, a_d)`` towards one shared target

    y = r + gamma^n * (1 - terminated) * mean_d Q_target_d(s', argmax_a Q_d(s', a))     (double Q)
    y = r + gamma^n * (1 - terminated) * mean_d max_a Q_target_d(s', a)                  (double_q: false)

with loss ``mean_d Huber(Q_d(s, a_d) - y)`` (or squared error, ``td_error_loss_fn: mse``) averaged over the batch.
``r`` is the n-step return and ``n`` the row's own ``n_step`` column (``training.replay``). Target updates,
optimiser, gradient clipping and the replay loop are RLlib's DQN and ``training.replay_algorithms``'s, unchanged.

``factored_dqn_config`` is the wiring ``training.algorithms.build_algorithm_config`` calls for
``algo: dqn`` with factored actions.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.dqn.dqn_learner import (
    QF_LOSS_KEY,
    QF_MAX_KEY,
    QF_MEAN_KEY,
    QF_MIN_KEY,
    QF_NEXT_PREDS,
    QF_PREDS,
    QF_TARGET_NEXT_PREDS,
    TD_ERROR_MEAN_KEY,
)
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics import TD_ERROR_KEY
from torch import nn

from core.errors import ConfigError
from envs.config import EnvConfig
from envs.layout import AssetLayout


def branching_td(
    q: torch.Tensor,
    actions: torch.Tensor,
    q_target_next: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    q_next: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The branches' chosen Q-values ``(B, K)`` and their shared TD target ``(B,)`` (no gradient).

    :param q: ``(B, K, L)`` online Q-values at ``s``; :param actions: ``(B, K)`` levels taken.
    :param q_target_next: ``(B, K, L)`` target network's Q-values at ``s'``.
    :param rewards: ``(B,)`` n-step returns; :param discounts: ``(B,)`` ``gamma^n * (1 - terminated)``.
    :param q_next: ``(B, K, L)`` online Q-values at ``s'`` (double Q picks the next levels with them); ``None``:
        the target network's own max.
    """
    chosen = q.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        picker = q_target_next if q_next is None else q_next
        best = picker.argmax(dim=-1, keepdim=True)
        next_value = q_target_next.gather(-1, best).squeeze(-1).mean(dim=-1)
        target = rewards + discounts * next_value
    return chosen, target


class FactoredDQNTorchLearner(DQNTorchLearner):
    """RLlib's DQN learner with the branching loss (module: ``policies.factored_q.FactoredQModule``)."""

    def compute_loss_for_module(
        self, *, module_id: str, config: Any, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> torch.Tensor:
        if Columns.LOSS_MASK in batch:
            raise ValueError(
                "branching DQN trains on single transitions; a loss mask (recurrent module) is not supported"
            )
        rewards = batch[Columns.REWARDS].float()
        not_done = 1.0 - batch[Columns.TERMINATEDS].float()
        discounts = config.gamma ** batch["n_step"].float() * not_done
        chosen, target = branching_td(
            fwd_out[QF_PREDS],
            batch[Columns.ACTIONS],
            fwd_out[QF_TARGET_NEXT_PREDS],
            rewards,
            discounts,
            fwd_out[QF_NEXT_PREDS] if config.double_q else None,
        )
        target = target.unsqueeze(-1).expand_as(chosen)
        loss_fn = nn.HuberLoss if config.td_error_loss_fn == "huber" else nn.MSELoss
        per_row = loss_fn(reduction="none")(chosen, target).mean(dim=-1)  # mean over branches
        total_loss = torch.mean(batch["weights"] * per_row)
        td_error = (chosen - target).abs().mean(dim=-1)  # per row, what a prioritised buffer would rank by
        self.metrics.log_value(key=(module_id, TD_ERROR_KEY), value=td_error, reduce="item_series")
        self.metrics.log_dict(
            {
                QF_LOSS_KEY: total_loss,
                QF_MEAN_KEY: chosen.mean(),
                QF_MAX_KEY: chosen.max(),
                QF_MIN_KEY: chosen.min(),
                TD_ERROR_MEAN_KEY: td_error.mean(),
            },
            key=module_id,
            window=1,
        )
        return total_loss


def observed_regimes(env: EnvConfig) -> int:
    """``R``: regime probabilities in the observation (``envs.layout``), as the export records them.

    :raises ConfigError: regimes are observed, chosen by BIC and not fitted yet (``training.config.with_regime_model``
        fills the model in)."""
    if not env.observe_regimes:
        return 0
    if env.regimes.model is not None:
        return len(env.regimes.model.transition)
    if isinstance(env.regimes.n_regimes, int):
        return env.regimes.n_regimes
    raise ConfigError(
        "model.kind asset_shared: the observed regimes' number is chosen by BIC when the model is fitted; build the "
        "algorithm config from training.config.with_regime_model(config, env)"
    )


def factored_dqn_config(algo_config: Any, config: Any) -> Any:
    """``algo_config`` (DQN) training ``policies.factored_q.FactoredQModule`` with the branching learner.

    :param config: the ``training.config.TrainConfig``; ``config.model.kind`` picks the body (``mlp`` when the
        field is absent).
    :raises ConfigError: distributional or noisy DQN, which the branching module does not implement."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from policies.factored_q import FactoredQModule

    hyperparameters = config.hyperparameters
    if int(hyperparameters.get("num_atoms", 1)) != 1 or hyperparameters.get("noisy", False):
        raise ConfigError(
            "hyperparameters: num_atoms > 1 and noisy are not supported with env.discrete_actions: factored"
        )
    kind = getattr(config.model, "kind", "mlp")
    model_config = {
        "kind": kind,
        "hidden": list(config.model.hidden),
        "activation": config.model.activation,
        "levels": config.env.factored_levels,
    }
    if kind == "asset_shared":
        model_config["layout"] = AssetLayout.of_env(config.env, observed_regimes(config.env)).to_json()
    # model_config replaces the fcnet settings; DQN's config still adds dueling, double_q, epsilon and num_atoms
    # beneath it (AlgorithmConfig.model_config), so the hyperparameters keep governing them.
    return algo_config.rl_module(
        model_config=model_config, rl_module_spec=RLModuleSpec(module_class=FactoredQModule)
    ).learners(learner_class=FactoredDQNTorchLearner)

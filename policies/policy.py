"""Deterministic inference of a trained RLlib module: observation -> action -> portfolio weights.

Used by the validation callback (in-memory module), by backtests and by the server (exported module). Needs no
Ray cluster: an ``RLModule`` is a torch module.
"""

from __future__ import annotations

import numpy as np
import torch

from envs.actions import ActionMap
from envs.bases import observed_base


class Policy:
    """Wraps an RLlib ``RLModule`` and the env's ``ActionMap``.

    :param module: a new-API-stack ``RLModule`` (DQN returns ``actions``; PPO and SAC return distribution inputs,
        whose deterministic action is taken).
    :param action_map: maps actions to weights exactly as the env does.
    """

    def __init__(self, module, action_map: ActionMap) -> None:
        self.module = module
        self.action_map = action_map
        self._dist_cls = None

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """``(N, F)`` observations -> ``(N,)`` discrete or ``(N, K)`` continuous deterministic actions."""
        obs = torch.from_numpy(np.ascontiguousarray(observations, dtype=np.float32))
        # What RLModule.forward_inference does, less its eval() on every call: that walks every submodule each time,
        # and with the decorator contexts it was about a third of a one-row call (PPO 328 -> 235 us). A module in
        # training (validation during training) is switched to eval for the call and back.
        module, was_training = self.module, self.module.training
        if was_training:
            module.eval()
        try:
            with torch.inference_mode():
                out = module._forward_inference({"obs": obs})
                if "actions" in out:
                    return out["actions"].cpu().numpy()
                if self._dist_cls is None:
                    self._dist_cls = module.get_inference_action_dist_cls()
                return self._dist_cls.from_logits(out["action_dist_inputs"]).to_deterministic().sample().cpu().numpy()
        finally:
            if was_training:
                module.train()

    def weights(self, observation: np.ndarray) -> np.ndarray:
        """One ``(F,)`` observation -> ``(K,)`` weights (a new array).

        The held weights, which relative action maps need, are the observation's last ``K`` entries, and a residual
        policy's base the ``K`` before them.
        """
        return self.weights_batch(observation[None, :])[0]

    def weights_batch(self, observations: np.ndarray) -> np.ndarray:
        """``(N, F)`` observations -> ``(N, K)`` weights."""
        observations = np.asarray(observations, dtype=np.float32)
        n_assets = self.action_map.n_assets
        held = observations[:, -n_assets:].astype(np.float64)
        if self.action_map.residual:  # the base it tilts is observed before the held weights (envs.bases)
            return self.action_map.batch(self.actions(observations), held, observed_base(observations, n_assets))
        return self.action_map.batch(self.actions(observations), held)  # row i: action_map(actions[i], held[i])

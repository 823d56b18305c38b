"""Deterministic inference of a trained RLlib module: observation -> action -> portfolio weights.

Used by the validation callback (in-memory module), by backtests and by the server (exported module). Needs no
Ray cluster: an ``RLModule`` is a torch module.
"""

from __future__ import annotations

import numpy as np
import torch

from envs.actions import ActionMap
from envs.bases import observed_base
from envs.layout import AssetLayout


class Policy:
    """Wraps an RLlib ``RLModule`` and the env's ``ActionMap``.

    :param module: a new-API-stack ``RLModule`` (DQN returns ``actions``; PPO and SAC return distribution inputs,
        whose deterministic action is taken).
    :param action_map: maps actions to weights exactly as the env does.
    :param layout: an asset-shared module's observation layout (``model.kind: asset_shared``): it then takes
        observations of any number of assets ``K`` (read from their size), each batch mapped by an ``ActionMap`` for
        its ``K``, built from ``env_config`` once per ``K``.
    """

    def __init__(self, module, action_map: ActionMap, *, layout: AssetLayout | None = None, env_config=None) -> None:
        self.module = module
        self.action_map = action_map
        self.layout = layout
        self._env_config = env_config
        self._maps = {action_map.n_assets: action_map}
        self._dist_cls = None

    def n_assets(self, size: int) -> int:
        """``K`` of an observation of ``size`` numbers (the training ``K`` for a flat module)."""
        return self.action_map.n_assets if self.layout is None else self.layout.n_assets(size)

    def action_map_for(self, n_assets: int) -> ActionMap:
        """The action map over ``n_assets`` assets (cached).

        :raises ValueError: another ``K`` than the training one for a module that is not asset-shared."""
        if n_assets not in self._maps:
            if self.layout is None or self._env_config is None:
                raise ValueError(
                    f"this policy's module takes {self.action_map.n_assets} assets, not {n_assets}: it is not "
                    "asset-shared (model.kind: asset_shared)"
                )
            self._maps[n_assets] = ActionMap.from_config(self._env_config, n_assets)
        return self._maps[n_assets]

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """``(N, F)`` observations -> ``(N,)`` grid or ``(N, K)`` factored discrete, or ``(N, K)`` continuous
        deterministic actions."""
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
        """``(N, F)`` observations of one ``K`` -> ``(N, K)`` weights."""
        observations = np.asarray(observations, dtype=np.float32)
        action_map = self.action_map_for(self.n_assets(observations.shape[-1]))
        n_assets = action_map.n_assets
        held = observations[:, -n_assets:].astype(np.float64)
        if action_map.residual:  # the base it tilts is observed before the held weights (envs.bases)
            return action_map.batch(self.actions(observations), held, observed_base(observations, n_assets))
        return action_map.batch(self.actions(observations), held)  # row i: action_map(actions[i], held[i])

"""A tanh-squashed Gaussian policy for PPO (``model.squash: true``).

RLlib's PPO draws continuous actions from a diagonal Gaussian and clips them to the action bounds. Once a mean
drifts past a bound, every sample of that coordinate clips to the same action, the advantage carries no signal for
it and the mean stays there: an asset whose logit sits at the lower bound is never bought again (measured: PPO never
held GOLD, which the growth-optimal mix holds in two of three regimes). Squashing the Gaussian through ``tanh`` (as
SAC does; Haarnoja et al. 2018, appendix C) keeps every action inside the bounds, so the gradient never vanishes at
them.

Exported modules of this class load with ``RLModule.from_checkpoint`` like any other, as long as this package is
importable (it is wherever ``policies.load.load_policy`` runs).
"""

from __future__ import annotations

import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
    DefaultPPOTorchRLModule,
)
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchSquashedGaussian,
)


class SquashedGaussian(TorchSquashedGaussian):
    """RLlib's squashed Gaussian with what PPO also needs.

    - ``kl``: KL divergence is invariant under the bijection ``tanh``, so it is the KL of the pre-squash Gaussians
      (exact).
    - ``entropy``: the pre-squash Gaussian's entropy, a proxy that PPO reports and that ``entropy_coeff`` would use
      (the squashed entropy has no closed form).
    - ``to_deterministic``: the squashed mean ``tanh(loc)``, not ``loc`` (RLlib's base class returns ``loc``).
    """

    def kl(self, other: SquashedGaussian) -> torch.Tensor:
        return torch.distributions.kl.kl_divergence(self._dist, other._dist).sum(-1)

    def entropy(self) -> torch.Tensor:
        return self._dist.entropy().sum(-1)

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=self._squash(self.loc))


class SquashedPPOModule(DefaultPPOTorchRLModule):
    """RLlib's default PPO module (same networks, same checkpoints) with ``SquashedGaussian`` actions."""

    def get_train_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def get_exploration_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def get_inference_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

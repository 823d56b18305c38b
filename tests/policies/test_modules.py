"""policies.modules: the squashed Gaussian PPO draws from stays inside the action bounds and gives PPO what it needs."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError
from policies.modules import SquashedGaussian
from training.config import resolve_train_config


def _dist(loc, log_std) -> SquashedGaussian:
    return SquashedGaussian.from_logits(torch.cat([torch.as_tensor(loc), torch.as_tensor(log_std)], dim=-1))


def test_samples_and_the_deterministic_action_lie_inside_the_bounds_even_for_far_means():
    dist = _dist([[8.0, -8.0, 0.3]], [[0.0, 0.0, -1.0]])
    samples = dist.sample(sample_shape=(2000,))
    assert samples.min() >= -1.0 and samples.max() <= 1.0
    # A mean far past a bound still gives different actions: the gradient has something to work with.
    assert samples[:, 0, 0].std() > 0
    deterministic = dist.to_deterministic().sample()
    assert torch.allclose(deterministic, torch.tanh(torch.tensor([[8.0, -8.0, 0.3]])))


def test_logp_of_its_own_samples_matches_the_change_of_variables():
    torch.manual_seed(0)
    dist = _dist([[0.2, -0.5]], [[-0.5, 0.1]])
    action, logp = dist.sample_and_logp()
    assert torch.allclose(dist.logp(action), logp, atol=1e-4)


def test_kl_is_the_kl_of_the_gaussians_before_squashing_and_entropy_is_their_entropy():
    p, q = _dist([[0.0, 1.0]], [[0.0, -1.0]]), _dist([[0.5, 1.0]], [[0.2, -1.0]])
    gp = torch.distributions.Normal(torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0]).exp())
    gq = torch.distributions.Normal(torch.tensor([0.5, 1.0]), torch.tensor([0.2, -1.0]).exp())
    assert torch.allclose(p.kl(q), torch.distributions.kl_divergence(gp, gq).sum(-1))
    assert torch.allclose(p.entropy(), gp.entropy().sum(-1))
    assert p.kl(p).item() == pytest.approx(0.0)


def test_squash_is_refused_for_algorithms_other_than_ppo():
    with pytest.raises(ConfigError, match="model.squash"):
        resolve_train_config("sac", overrides={"model": {"squash": True}})


def test_the_shipped_ppo_config_trains_the_squashed_module():
    from policies.modules import SquashedPPOModule
    from training.algorithms import build_algorithm_config

    config = resolve_train_config("ppo")
    assert config.model.squash
    assert build_algorithm_config(config).rl_module_spec.module_class is SquashedPPOModule

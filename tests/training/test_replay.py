"""training.replay.TransitionReplay: n-step rows equal to a direct computation, chunks joined, ring overwrite."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from training.replay import TransitionReplay


def reference_rows(obs, actions, rewards, terminated, n, gamma):
    """The n-step rows of one whole episode, computed step by step."""
    steps = len(actions)
    rows = []
    for t in range(steps):
        h = min(n, steps - t)
        ret = sum(gamma**k * rewards[t + k] for k in range(h))
        rows.append((obs[t], actions[t], ret, obs[t + h], terminated and t + h == steps, h))
    return rows


def stored_rows(buffer: TransitionReplay):
    cols = buffer._columns
    order = np.arange(len(buffer))
    return [
        (
            cols["obs"][i],
            cols["actions"][i],
            cols["rewards"][i],
            cols["new_obs"][i],
            cols["terminateds"][i],
            cols["n_step"][i],
        )
        for i in order
    ]


def episode(rng, steps, obs_dim=3, act_dim=2):
    obs = rng.normal(size=(steps + 1, obs_dim)).astype(np.float32)
    actions = rng.normal(size=(steps, act_dim)).astype(np.float32)
    rewards = rng.normal(size=steps).astype(np.float32)
    return obs, actions, rewards


def assert_same_rows(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g[0], w[0])
        np.testing.assert_array_equal(g[1], w[1])
        assert g[2] == pytest.approx(w[2], rel=1e-5, abs=1e-6)
        np.testing.assert_array_equal(g[3], w[3])
        assert bool(g[4]) == bool(w[4])
        assert int(g[5]) == int(w[5])


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("terminated", [True, False])
def test_chunked_episode_gives_the_whole_episodes_n_step_rows(n, terminated):
    rng = np.random.default_rng(0)
    obs, actions, rewards = episode(rng, 11)
    buffer = TransitionReplay(100, n_step=n, gamma=0.9)
    cuts = [0, 4, 5, 9, 11]  # chunks of 4, 1, 4 and 2 steps; each starts from the previous chunk's last observation
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        last = b == cuts[-1]
        buffer.add_chunk(
            "ep",
            obs=obs[a : b + 1],
            actions=actions[a:b],
            rewards=rewards[a:b],
            terminated=terminated and last,
            done=last,
        )
        if not last:
            assert len(buffer) == b - (n - 1)  # the last n - 1 steps wait for rewards not seen yet
    assert buffer.pending_episodes() == 0
    assert_same_rows(stored_rows(buffer), reference_rows(obs, actions, rewards, terminated, n, 0.9))


def test_interleaved_episodes_do_not_mix():
    rng = np.random.default_rng(1)
    first, second = episode(rng, 6), episode(rng, 6)
    buffer = TransitionReplay(100, n_step=2, gamma=0.5)
    for a, b in [(0, 3), (3, 6)]:
        for key, (obs, actions, rewards) in (("a", first), ("b", second)):
            buffer.add_chunk(
                key, obs=obs[a : b + 1], actions=actions[a:b], rewards=rewards[a:b], terminated=True, done=b == 6
            )
    rows = stored_rows(buffer)
    want_a = reference_rows(*first, True, 2, 0.5)
    want_b = reference_rows(*second, True, 2, 0.5)
    # arrival order: a's first 2 rows, b's first 2, then a's last 4, b's last 4
    assert_same_rows(rows, want_a[:2] + want_b[:2] + want_a[2:] + want_b[2:])


def test_ring_keeps_the_newest_rows_and_samples_only_stored_ones():
    buffer = TransitionReplay(5, n_step=1, gamma=0.9, seed=0)
    obs = np.arange(9, dtype=np.float32)[:, None]
    buffer.add_chunk(
        0, obs=obs, actions=np.arange(8), rewards=np.arange(8, dtype=np.float32), terminated=True, done=True
    )
    assert len(buffer) == 5 and buffer.added == 8
    assert sorted(buffer._columns["actions"].tolist()) == [3, 4, 5, 6, 7]
    batch = buffer.sample(256)
    assert set(batch["actions"].tolist()) <= {3, 4, 5, 6, 7}
    np.testing.assert_array_equal(batch["new_obs"][:, 0], batch["obs"][:, 0] + 1)
    np.testing.assert_array_equal(batch["weights"], 1.0)
    assert batch["terminateds"].tolist().count(True) == (batch["actions"] == 7).sum()


def test_uniform_sampling_is_reproducible_per_seed():
    def draw(seed):
        buffer = TransitionReplay(50, seed=seed)
        obs = np.arange(41, dtype=np.float32)[:, None]
        buffer.add_chunk(
            0, obs=obs, actions=np.arange(40), rewards=np.zeros(40, np.float32), terminated=False, done=True
        )
        return buffer.sample(64)["actions"]

    np.testing.assert_array_equal(draw(3), draw(3))
    assert not np.array_equal(draw(3), draw(4))


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ConfigError, match="n_step"):
        TransitionReplay(10, n_step=0)
    with pytest.raises(ConfigError, match="n_step"):
        TransitionReplay(10, n_step=(1, 3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="capacity"):
        TransitionReplay(0)
    buffer = TransitionReplay(10)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4)
    with pytest.raises(ValueError, match="one more observation"):
        buffer.add_chunk(0, obs=np.zeros((3, 1)), actions=np.zeros(3), rewards=np.zeros(3), terminated=False, done=True)


def test_rllib_episode_chunks_store_the_same_rows_as_the_whole_episode():
    """What an env runner hands over: a ``SingleAgentEpisode`` cut into chunks that share its id."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    rng = np.random.default_rng(2)
    obs, actions, rewards = episode(rng, 7)
    buffer = TransitionReplay(100, n_step=2, gamma=0.8)
    chunk = SingleAgentEpisode()
    chunk.add_env_reset(observation=obs[0])
    for t in range(7):
        chunk.add_env_step(obs[t + 1], actions[t], float(rewards[t]), terminated=t == 6)
        if t in (2, 4, 6):
            buffer.add_episodes([chunk])
            if not chunk.is_done:
                chunk = chunk.cut(len_lookback_buffer=1)  # as RLlib's env runner cuts (episode_lookback_horizon)
    assert_same_rows(stored_rows(buffer), reference_rows(obs, actions, rewards, True, 2, 0.8))

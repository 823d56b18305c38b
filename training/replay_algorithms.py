"""DQN and SAC that replay from ``training.replay.TransitionReplay`` instead of RLlib's episode buffers.

Everything but the replay is RLlib's: env runners, the module, the learner and its losses, target updates, the
sampled-to-replayed ratio (``training_intensity``, through RLlib's ``calculate_rr_weights``), metrics and
checkpoints. The training step is DQN's new-stack ``_training_step_new_api_stack`` (which SAC inherits) with two
changes: sampled episodes go into the array buffer, and the learner receives a ready ``MultiAgentBatch`` (so the
learner connector, which only turns episodes into that batch, is skipped). TD errors are dropped: the buffer samples
uniformly. The buffer is not checkpointed (RLlib's default too); after a restore, learning waits until the buffer
holds ``num_steps_sampled_before_learning_starts`` transitions (and one batch) again, as at the start.

``TrainConfig.replay: rllib`` keeps RLlib's own algorithms and buffer (``replay_buffer_config.type``).
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.dqn import DQN, DQNConfig
from ray.rllib.algorithms.dqn.dqn import calculate_rr_weights
from ray.rllib.algorithms.sac import SAC, SACConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_SAMPLE_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TD_ERROR_KEY,
    TIMERS,
)

from core.errors import ConfigError
from training.replay import TransitionReplay, check_n_step


def _capacity(config: Any) -> int:
    return int(config.replay_buffer_config.get("capacity", 100_000))


def check_array_replay(config: Any) -> None:
    """What the array buffer cannot do, refused before anything is built (``training.algorithms`` calls it too)."""
    if config.model_config.get("use_lstm"):
        raise ConfigError("replay: 'array' stores single transitions; recurrent modules need replay: 'rllib'")
    check_n_step(config.n_step)
    capacity = _capacity(config)
    if capacity < config.total_train_batch_size:
        raise ConfigError(
            f"hyperparameters.replay_buffer_config.capacity: {capacity} is less than one train batch "
            f"({config.total_train_batch_size}); learning would never start"
        )
    if config.store_buffer_in_checkpoints:
        raise ConfigError(
            "store_buffer_in_checkpoints: the array replay buffer is not checkpointed; use replay: 'rllib'"
        )


class _ArrayReplay:
    """Mixin over ``DQN`` (and so ``SAC``): the replay half of the training step."""

    config: Any
    metrics: Any
    env_runner_group: Any
    learner_group: Any

    def setup(self, config: Any) -> None:
        super().setup(config)  # type: ignore[misc]
        check_array_replay(self.config)
        self.transitions = TransitionReplay(
            _capacity(self.config),
            n_step=self.config.n_step,
            gamma=self.config.gamma,
            seed=self.config.seed,
        )

    def _sampled_lifetime(self) -> dict[str, Any]:
        return {
            NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)),
            NUM_AGENT_STEPS_SAMPLED_LIFETIME: self.metrics.peek((ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME)),
        }

    def _training_step_new_api_stack(self) -> None:
        store_weight, sample_and_train_weight = calculate_rr_weights(self.config)
        for _ in range(store_weight):
            with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
                episodes, env_runner_results = synchronous_parallel_sample(
                    worker_set=self.env_runner_group,
                    concat=True,
                    sample_timeout_s=self.config.sample_timeout_s,
                    _uses_new_env_runners=True,
                    _return_metrics=True,
                )
            self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
                self.transitions.add_episodes(episodes)

        batch_size = self.config.total_train_batch_size
        # The buffer itself must hold what learning waits for: after a restore the lifetime counters are back but
        # the buffer (not checkpointed) starts empty.
        if len(self.transitions) < max(batch_size, self.config.num_steps_sampled_before_learning_starts):
            return
        learner_results: list[dict[str, Any]] = []
        for _ in range(sample_and_train_weight):
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
                columns = self.transitions.sample(batch_size)
                batch = MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(columns)}, env_steps=batch_size)
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                learner_results = self.learner_group.update(batch=batch, timesteps=self._sampled_lifetime())
                for result in learner_results:  # per-row TD errors only feed a prioritised buffer
                    for module_results in result.values():
                        module_results.pop(TD_ERROR_KEY, None)
                self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=set(learner_results[0]) - {ALL_MODULES},
                global_vars=None,
                inference_only=True,
            )


class ArrayReplayDQN(_ArrayReplay, DQN):
    @classmethod
    def get_default_config(cls) -> ArrayReplayDQNConfig:
        return ArrayReplayDQNConfig()


class ArrayReplaySAC(_ArrayReplay, SAC):
    @classmethod
    def get_default_config(cls) -> ArrayReplaySACConfig:
        return ArrayReplaySACConfig()


class ArrayReplayDQNConfig(DQNConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or ArrayReplayDQN)


class ArrayReplaySACConfig(SACConfig):
    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or ArrayReplaySAC)

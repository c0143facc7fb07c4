"""``FCPO(Algorithm)``: EnvRunners sample one episode per user, one central learner takes a CPO step.

``training_step`` only samples, measures the batch's episode cost (J_C, passed to the learner in
``timesteps``), updates and syncs weights. With ``fast_rollouts`` (default) the EnvRunners return a
dense [users, T] rollout table (``env_runner.FCPOEnvRunner``) that goes to the learner as a ready
train batch; otherwise RLlib's episode + connector path is used (same maths, ~2.5x slower on ML-100K).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from fairrec_ray.fcpo import keys
from fairrec_ray.fcpo.config import FCPOConfig
from fairrec_ray.fcpo.env import INFO_COST
from fairrec_ray.fcpo.env_runner import REWARDS, episode_stats, merge_columns, train_batch_columns


def episode_returns(episodes: list, gamma_c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per episode: undiscounted reward, undiscounted cost, discounted cost (sum_t gamma_c^t c_t)."""
    rewards, costs, discounted = [], [], []
    for episode in episodes:
        c = np.array([info.get(INFO_COST, 0.0) for info in episode.get_infos()[1:]], dtype=np.float64)
        rewards.append(float(np.sum(episode.get_rewards())))
        costs.append(float(c.sum()))
        discounted.append(float(np.sum(c * gamma_c ** (episode.t_started + np.arange(len(c))))))
    return np.asarray(rewards), np.asarray(costs), np.asarray(discounted)


class FCPO(Algorithm):
    @classmethod
    def get_default_config(cls) -> FCPOConfig:
        return FCPOConfig()

    def training_step(self) -> None:
        if self.config.fast_rollouts:
            return self._fast_training_step()
        config: FCPOConfig = self.config
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, runner_metrics = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                concat=True,
                sample_timeout_s=config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(runner_metrics, key=ENV_RUNNER_RESULTS)
        if not episodes:
            return

        reward, cost, cost_discounted = episode_returns(episodes, config.gamma_c)
        stats = self._log_episode_stats(reward, cost, cost_discounted)
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps=self._learner_timesteps(stats),
                num_epochs=1,
                minibatch_size=None,
            )
        self._finish_step(learner_results)

    def _fast_training_step(self) -> None:
        """Columnar rollouts (``FCPOEnvRunner.sample_columns``) -> one ready train batch."""
        config: FCPOConfig = self.config
        remote = config.num_env_runners > 0
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            parts = self.env_runner_group.foreach_env_runner(
                lambda runner: runner.sample_columns(), local_env_runner=not remote
            )
        columns = merge_columns(parts)
        steps = int(columns[REWARDS].size)
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), steps, reduce="lifetime_sum")
        stats = self._log_episode_stats(*episode_stats(columns, config.gamma_c))
        batch = MultiAgentBatch(
            {DEFAULT_MODULE_ID: SampleBatch(train_batch_columns(columns, config.gamma_c))}, env_steps=steps
        )
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                batch=batch, timesteps=self._learner_timesteps(stats), num_epochs=1, minibatch_size=None
            )
        self._finish_step(learner_results)

    def _log_episode_stats(self, reward: np.ndarray, cost: np.ndarray, cost_discounted: np.ndarray) -> dict:
        stats = {
            keys.EPISODE_REWARD_MEAN: float(reward.mean()),
            keys.EPISODE_COST_MEAN: float(cost.mean()),
            keys.EPISODE_COST_DISCOUNTED: float(cost_discounted.mean()),
            keys.COST_LIMIT: self.config.cost_limit,
            keys.NUM_EPISODES: len(reward),
        }
        for key, value in stats.items():
            self.metrics.log_value(key, value, window=1)
        return stats

    def _learner_timesteps(self, stats: dict) -> dict:
        return {
            NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0
            ),
            keys.TS_EPISODE_COST: stats[keys.EPISODE_COST_DISCOUNTED],
            keys.TS_NUM_EPISODES: stats[keys.NUM_EPISODES],
        }

    def _finish_step(self, learner_results: Any) -> None:
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)

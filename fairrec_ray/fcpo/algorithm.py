"""``FCPO(Algorithm)``: EnvRunners sample one episode per user, one central learner takes a CPO step.

``training_step`` only samples, measures the batch's episode cost (J_C, passed to the learner in
``timesteps``), updates and syncs weights.
"""

from __future__ import annotations

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
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
        stats = {
            keys.EPISODE_REWARD_MEAN: float(reward.mean()),
            keys.EPISODE_COST_MEAN: float(cost.mean()),
            keys.EPISODE_COST_DISCOUNTED: float(cost_discounted.mean()),
            keys.COST_LIMIT: config.cost_limit,
            keys.NUM_EPISODES: len(episodes),
        }
        for key, value in stats.items():
            self.metrics.log_value(key, value, window=1)

        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0
                    ),
                    keys.TS_EPISODE_COST: stats[keys.EPISODE_COST_DISCOUNTED],
                    keys.TS_NUM_EPISODES: len(episodes),
                },
                num_epochs=1,
                minibatch_size=None,
            )
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)

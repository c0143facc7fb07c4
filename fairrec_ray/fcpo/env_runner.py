"""``FCPOEnvRunner``: RLlib's ``SingleAgentEnvRunner`` with a shard of the users and a columnar rollout.

Shards: EnvRunner ``i`` of ``R`` (worker index 1..R) owns the ``i``-th of ``R`` contiguous,
near-equal blocks of the training users (``shard_users``); the local runner (index 0) samples
only when there are no remote runners, and then owns every user. Each runner's env is a vector
over its own shard, so one iteration samples each training user exactly once and the runners'
union is the training set (RLlib's default ``make_env`` would give every runner the same vector
size and its own seeded draw of users: with 2 runners and 64 users, 47 distinct users).

Columnar rollouts: RLlib's episode path keeps one ``SingleAgentEpisode`` per user and steps the
connector pipelines per episode. Every FCPO episode has exactly ``T`` steps and starts together
with the others, so the rollout is a dense ``[users, T]`` table: ``sample_columns`` fills it with
one batched actor forward per step and returns numpy columns, which ``FCPO.training_step`` hands to
the learner as a ready train batch. Weights, state, checkpoints and the episode path (``sample()``,
used when ``fast_rollouts`` is False) are the parent's.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from gymnasium.wrappers.vector import DictInfoToList
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from fairrec_ray.fcpo import keys
from fairrec_ray.fcpo.env import INFO_COST, RecVectorEnv

# Columns of ``sample_columns``' output: arrays shaped [users, T, ...], users [U].
ROLLOUT_COLUMNS = (Columns.OBS, Columns.ACTIONS, Columns.REWARDS, keys.COSTS)


def shard_users(n_users: int, num_env_runners: int, worker_index: int) -> np.ndarray:
    """User rows of EnvRunner ``worker_index``: block ``worker_index - 1`` of ``num_env_runners``
    contiguous near-equal blocks; every user for the local runner (index 0) or without remote runners."""
    if num_env_runners <= 0 or worker_index <= 0:
        return np.arange(n_users)
    return np.array_split(np.arange(n_users), num_env_runners)[worker_index - 1]


class FCPOEnvRunner(SingleAgentEnvRunner):
    env: Any  # RLlib's attribute (a gymnasium VectorEnv wrapper, or None before make_env)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        seed = (self.config.seed or 0) * 1000 + (self.worker_index or 0)
        self._noise = torch.Generator().manual_seed(seed)
        self._rollout_seed = seed

    def make_env(self) -> None:
        """A ``RecVectorEnv`` over this runner's shard (``users_per_env_runner`` of them at a time)."""
        if self.env is not None:
            self.env.close()
        config = self.config
        data = config.env_config["data"]
        users = shard_users(data.n_users, config.num_env_runners, self.worker_index or 0)
        num_envs = min(len(users), config.users_per_env_runner or len(users))
        env = RecVectorEnv(data, num_envs=num_envs, top_k=config.top_k, horizon=config.horizon, users=users)
        self.env = DictInfoToList(env)
        self.num_envs = num_envs
        self._needs_initial_reset = True

    @torch.no_grad()
    def sample_columns(self) -> dict[str, np.ndarray]:
        """One episode for each of ``num_envs`` users of this runner's shard, sampled from the
        Gaussian policy: obs [U, T, obs_dim], actions [U, T, act_dim], rewards and costs [U, T],
        and the user rows [U]."""
        env: RecVectorEnv = self.env.unwrapped
        module = self.module.unwrapped()
        obs_np, _ = env.reset(seed=self._rollout_seed)  # the env reseeds only when the seed changes
        n, horizon = env.num_envs, env.horizon
        obs_all = np.empty((n, horizon, obs_np.shape[1]), np.float32)
        (act_dim,) = cast(tuple[int], env.single_action_space.shape)
        act_all = np.empty((n, horizon, act_dim), np.float32)
        rew_all = np.empty((n, horizon), np.float32)
        cost_all = np.empty((n, horizon), np.float32)
        users = env.rows.copy()
        for t in range(horizon):
            obs = torch.from_numpy(obs_np)
            mean, log_std = module.dist_inputs(obs).chunk(2, dim=-1)
            action = mean + log_std.exp() * torch.randn(mean.shape, generator=self._noise)
            obs_all[:, t] = obs_np
            act_all[:, t] = action.numpy()
            obs_np, reward, _, _, info = env.step(act_all[:, t])
            rew_all[:, t] = reward
            cost_all[:, t] = info[INFO_COST]
        return {
            Columns.OBS: obs_all,
            Columns.ACTIONS: act_all,
            Columns.REWARDS: rew_all,
            keys.COSTS: cost_all,
            keys.USERS: users,
        }


def merge_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack the runners' tables along the user axis."""
    return {key: np.concatenate([p[key] for p in parts], axis=0) for key in (*ROLLOUT_COLUMNS, keys.USERS)}


def episode_stats(columns: dict[str, np.ndarray], gamma_c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per episode (user): undiscounted reward, undiscounted cost, discounted cost sum_t gamma_c^t c_t."""
    costs = columns[keys.COSTS].astype(np.float64)
    discount = gamma_c ** np.arange(costs.shape[1])
    return columns[Columns.REWARDS].sum(1).astype(np.float64), costs.sum(1), costs @ discount


def train_batch_columns(columns: dict[str, np.ndarray], gamma_c: float) -> dict[str, np.ndarray]:
    """Flat train-batch columns, episode after episode in time order (what the learner connectors
    build from episodes, without their artificial bootstrap row: every episode terminates at T)."""
    users, horizon = columns[Columns.REWARDS].shape
    terminated = np.zeros((users, horizon), bool)
    terminated[:, -1] = True
    return {
        Columns.OBS: columns[Columns.OBS].reshape(users * horizon, -1),
        Columns.ACTIONS: columns[Columns.ACTIONS].reshape(users * horizon, -1),
        Columns.REWARDS: columns[Columns.REWARDS].reshape(-1),
        keys.COSTS: columns[keys.COSTS].reshape(-1),
        keys.COST_DISCOUNT: np.tile(gamma_c ** np.arange(horizon, dtype=np.float32), users).astype(np.float32),
        Columns.TERMINATEDS: terminated.reshape(-1),
        Columns.TRUNCATEDS: np.zeros(users * horizon, bool),
        Columns.LOSS_MASK: np.ones(users * horizon, bool),
    }

"""The FCPO recommendation MDP as one gymnasium ``VectorEnv`` over a batch of users.

Why a ``VectorEnv`` (and not one env per user, nor one env whose step is a whole user batch):
RLlib 2.60's ``SingleAgentEnvRunner`` builds its env with ``gym.make_vec(num_envs=
num_envs_per_env_runner, vectorization_mode=...)``; with ``gym_env_vectorize_mode=
"vector_entry_point"`` the creator returns our own ``VectorEnv`` and RLlib batches the policy's
forward pass over all ``num_envs`` users. One sub-env = one user, so episodes, GAE and the CPO
surrogates keep their textbook per-user meaning (scalar reward/cost per step), while the hot path
(scoring every item, masking, top-K, rewards, costs, state updates) is a handful of batched torch
ops with no per-user Python loop. A "sync" vector of per-user envs would loop in Python; a single
env whose action is the whole batch would break RLlib's scalar-reward episodes.

MDP (Ge et al. 2021, with the reference's bugs fixed):
* state: embeddings of the user's last ``n_start`` positive items, plus ``t / T``;
* action: a continuous vector ``w`` (Gaussian policy); items are scored ``w . e_i``, already shown
  or consumed items get ``-inf`` and the top-K are recommended (the CPO log-prob is that of ``w``);
  with ``RecEnvData.exposure_scale > 0``, ``e_i`` carries one more feature (the scaled G0
  indicator), so the last coordinate of ``w`` is a score offset for popular items;
* reward: number of recommended items in the user's held-out positives, each paying once;
* cost: number of recommended items in the popular group G0 (returned in ``infos["cost"]``);
* transition: hit items join the state window (in rank order); episode ends after ``T`` steps
  (``terminated``: ``t / T`` is part of the state, so the time limit is part of the MDP).

Autoreset follows gymnasium's NEXT_STEP mode: the ``step`` after an episode ended resets.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from fairrec_ray.errors import ConfigError
from fairrec_ray.fcpo.env_data import RecEnvData, Split

INFO_COST = "cost"
INFO_USER = "user"  # reset info: the user row of each sub-env


def check_env_sizes(n_items: int, n_start: int, top_k: int, horizon: int) -> None:
    """Every step must find ``top_k`` never-shown, never-consumed items."""
    if top_k < 1 or horizon < 1:
        raise ConfigError(f"top_k={top_k}, horizon={horizon}: both must be >= 1 (e.g. top_k=10, horizon=10)")
    if top_k > n_items:
        raise ConfigError(f"top_k={top_k} > number of items {n_items}: recommend at most {n_items} items per step")
    if n_start + top_k * horizon > n_items:
        raise ConfigError(
            f"top_k * horizon = {top_k * horizon} plus the {n_start}-item start state exceeds the {n_items} items: "
            f"an episode never repeats an item, so lower top_k or horizon"
        )


class RecVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` users stepped together; see the module docstring for the MDP.

    Users are drawn at each reset without replacement (cycling through a seeded permutation of
    ``users``), or pinned with ``reset(options={"users": rows})`` for evaluation. The train split
    masks the start state; the validation and test splits also mask what was consumed before them.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        data: RecEnvData,
        num_envs: int,
        top_k: int = 10,
        horizon: int = 10,
        split: Split = "train",
        users: np.ndarray | None = None,
    ) -> None:
        check_env_sizes(data.n_items, data.n_start, top_k, horizon)
        if num_envs < 1:
            raise ConfigError(f"num_envs: got {num_envs}; expected >= 1 users per env runner")
        self.data, self.num_envs, self.top_k, self.horizon, self.split = data, num_envs, top_k, horizon, split
        self._start, positives, history = data.split(split)
        self._positives, self._history = positives, history
        self._users = np.arange(data.n_users) if users is None else np.asarray(users, np.int64)
        self._item_emb = torch.from_numpy(data.item_emb)
        self._score_rows = torch.from_numpy(data.scoring_matrix())
        self._popular = torch.from_numpy(data.popular)
        obs_dim = data.n_start * data.dim + 1
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.single_action_space = gym.spaces.Box(-np.inf, np.inf, (data.action_dim,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._rng = np.random.default_rng()
        self._seed: int | None = None
        self._order = np.zeros(0, np.int64)
        self._cursor = 0
        self._needs_reset = True
        # Per-episode state (filled by reset).
        self.rows = np.zeros(num_envs, np.int64)  # user rows of RecEnvData
        self.t = 0
        self.window = torch.zeros((num_envs, data.n_start), dtype=torch.int64)
        self.shown = torch.zeros((num_envs, data.n_items), dtype=torch.bool)
        self._penalty = torch.zeros((num_envs, data.n_items), dtype=torch.float32)
        self.remaining = torch.zeros((num_envs, data.n_items), dtype=torch.bool)
        self.n_positives = np.zeros(num_envs, np.int64)  # held-out positives before the rollout
        self.last_recommended = torch.zeros((num_envs, top_k), dtype=torch.int64)
        self.last_hits = torch.zeros((num_envs, top_k), dtype=torch.bool)

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        # RLlib passes the same per-runner seed on every episode-mode sample(): reseed only when
        # it changes, else every iteration would replay the same users and noise.
        if seed is not None and seed != self._seed:
            self._seed, self._rng = seed, np.random.default_rng(seed)
            self._order, self._cursor = np.zeros(0, np.int64), 0
        rows = None if options is None else options.get("users")
        self.rows = self._draw_users() if rows is None else np.asarray(rows, np.int64)
        if len(self.rows) != self.num_envs:
            raise ConfigError(f"reset: got {len(self.rows)} users for a vector of {self.num_envs}")
        self._load_users(self.rows)
        self._needs_reset = False
        return self._observe(), {INFO_COST: np.zeros(self.num_envs, np.float32), INFO_USER: self.rows.copy()}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._needs_reset:  # NEXT_STEP autoreset: this step only resets
            obs, info = self.reset()
            zeros = np.zeros(self.num_envs, dtype=bool)
            return obs, np.zeros(self.num_envs, np.float32), zeros, zeros.copy(), info
        w = torch.as_tensor(np.asarray(actions, dtype=np.float32)).reshape(self.num_envs, -1)
        recommended = self.recommend(w)
        rows = torch.arange(self.num_envs).unsqueeze(1)
        hits = self.remaining[rows, recommended]
        self.remaining[rows, recommended] = False  # each positive pays once
        self.shown[rows, recommended] = True  # never recommended twice in an episode
        self._penalty[rows, recommended] = -torch.inf
        reward = hits.sum(1).to(torch.float32)
        cost = self._popular[recommended].sum(1).to(torch.float32)
        self._push_hits(recommended, hits)
        self.last_recommended, self.last_hits = recommended, hits
        self.t += 1
        done = self.t >= self.horizon
        self._needs_reset = done
        terminated = np.full(self.num_envs, done, dtype=bool)
        info = {INFO_COST: cost.numpy()}
        return self._observe(), reward.numpy(), terminated, np.zeros(self.num_envs, dtype=bool), info

    # -- vectorised pieces ---------------------------------------------------------------------
    def recommend(self, w: torch.Tensor) -> torch.Tensor:
        """Top-K unseen items for each user's action vector, best first: ``[num_envs, K]``."""
        # penalty is 0 or -inf (not a x0 mask: a shown item can never win); addmm fuses the add.
        scores = torch.addmm(self._penalty, w, self._score_rows.T)
        return torch.topk(scores, self.top_k, dim=1).indices

    def _push_hits(self, recommended: torch.Tensor, hits: torch.Tensor) -> None:
        """Append hit items (in rank order) to the window and keep its last ``n_start`` entries."""
        if not bool(hits.any()):
            return
        merged = torch.cat([self.window, recommended], dim=1)
        valid = torch.cat([torch.ones_like(self.window, dtype=torch.bool), hits], dim=1)
        # Stable sort puts invalid entries first and keeps the order among valid ones.
        order = torch.sort(valid.to(torch.int8), dim=1, stable=True).indices
        self.window = torch.gather(merged, 1, order)[:, -self.data.n_start :]

    def _observe(self) -> np.ndarray:
        emb = self._item_emb[self.window].reshape(self.num_envs, -1)
        time = torch.full((self.num_envs, 1), self.t / self.horizon, dtype=torch.float32)
        return torch.cat([emb, time], dim=1).numpy()

    def _draw_users(self) -> np.ndarray:
        out = []
        need = self.num_envs
        while need > 0:
            if self._cursor >= len(self._order):
                self._order, self._cursor = self._rng.permutation(self._users), 0
            take = self._order[self._cursor : self._cursor + need]
            self._cursor += len(take)
            out.append(take)
            need -= len(take)
        return np.concatenate(out)

    def _load_users(self, rows: np.ndarray) -> None:
        n, n_items = self.num_envs, self.data.n_items
        start = torch.from_numpy(self._start[rows])
        self.window = start.clone()
        self.shown = torch.zeros((n, n_items), dtype=torch.bool)
        self.shown[torch.arange(n).unsqueeze(1), start] = True
        if self._history is not None:
            r, items = self._history.rows_of(rows)
            self.shown[torch.from_numpy(r), torch.from_numpy(items)] = True
        r, items = self._positives.rows_of(rows)
        self._penalty = torch.zeros((n, n_items), dtype=torch.float32).masked_fill_(self.shown, -torch.inf)
        self.remaining = torch.zeros((n, n_items), dtype=torch.bool)
        self.remaining[torch.from_numpy(r), torch.from_numpy(items)] = True
        self.remaining &= ~self.shown  # a consumed item cannot be a held-out hit
        self.n_positives = self.remaining.sum(1).numpy().copy()
        self.t = 0


def make_rec_vector_env(config: dict[str, Any]) -> RecVectorEnv:
    """RLlib env creator (``gym_env_vectorize_mode="vector_entry_point"``): RLlib calls it with
    ``env_config | {"num_envs": num_envs_per_env_runner}``."""
    return RecVectorEnv(
        data=config["data"],
        num_envs=int(config.get("num_envs", 1)),
        top_k=int(config.get("top_k", 10)),
        horizon=int(config.get("horizon", 10)),
        split=config.get("split", "train"),
    )

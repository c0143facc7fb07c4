"""Evaluation of an FCPO policy (or any scoring rule) by a deterministic rollout on the validation or
test split.

Every user with a held-out positive in the split starts from that split's start state; each of
the T steps recommends K unseen items.
The rollout's ranked list is the step-major concatenation (step 1's K items in rank order, then
step 2's, ...). Ranking metrics at N use its first N entries; recall's denominator is the user's
held-out positives counted *before* the rollout (the reference counted after, inflating recall).
Exposure metrics (Gini over all items, popularity rate) and cost use the whole rollout; the
rank-weighted exposure metrics (``metrics.exposure_metrics``: exposure Gini, popular share and
ratio, ARP, APLT, coverage) are amortised over the episode: each step's K-item slate is one list
(rank 1..K within the slate), summed over all steps and users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fairrec_ray.fcpo.env import RecVectorEnv
from fairrec_ray.fcpo.env_data import RecEnvData, Split
from fairrec_ray.metrics import (
    exposure_counts,
    exposure_metrics,
    gini_index,
    popularity_rate,
    precision_recall_f1_ndcg_at_k,
    violation_rate,
)

# Keys of the evaluation dict (besides the ranking metrics named like "recall@10").
GINI = "gini"
POPULARITY_RATE = "popularity_rate"
COST_MEAN = "cost"  # undiscounted popular items per episode
COST_DISCOUNTED = "cost_discounted"  # J_C, comparable with the limit d
COST_LIMIT = "cost_limit"
VIOLATION_RATE = "violation_rate"  # share of users whose discounted cost exceeds d
REWARD_MEAN = "reward"

# obs [n, obs_dim] float32 -> action w [n, dim]; or, for non-RL baselines, see ``ScoreFn``.
PolicyFn = Callable[[np.ndarray], np.ndarray]


def mean_action_policy(module: Any) -> PolicyFn:
    """Deterministic policy: the Gaussian actor's mean."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            inputs = module.dist_inputs(torch.from_numpy(obs))
        return inputs[:, : inputs.shape[1] // 2].numpy()

    return act


def learner_policy(algo: Any) -> PolicyFn:
    """The learner's current actor (works for num_learners 0 or 1 and any number of EnvRunners)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    spec = algo.config.get_rl_module_spec(spaces=_spaces(algo.config.env_data), inference_only=False)
    module = spec.build()
    module.set_state(algo.learner_group.get_weights()[DEFAULT_MODULE_ID])
    module.eval()
    return mean_action_policy(module)


def _spaces(data: RecEnvData) -> dict[str, Any]:
    env = RecVectorEnv(data, num_envs=1, top_k=1, horizon=1)
    from ray.rllib.core import DEFAULT_MODULE_ID

    return {DEFAULT_MODULE_ID: (env.single_observation_space, env.single_action_space)}


def policy_rollout(
    data: RecEnvData,
    policy: PolicyFn,
    top_k: int,
    horizon: int,
    split: Split = "test",
    batch_size: int = 2048,
    gamma_c: float = 1.0,
) -> dict[str, np.ndarray]:
    """Run every user of ``split`` with a held-out positive (``data.eval_users``) once; returns
    ``recommended`` [U, T*K], ``relevant`` [U, I] bool (held-out positives before the rollout),
    ``n_relevant`` [U], ``reward`` [U], ``cost`` [U], ``cost_discounted`` [U]."""
    users = data.eval_users(split)
    n_users = len(users)
    recommended = np.zeros((n_users, horizon * top_k), np.int64)
    relevant = np.zeros((n_users, data.n_items), bool)
    n_relevant = np.zeros(n_users, np.int64)
    reward, cost, cost_disc = np.zeros(n_users), np.zeros(n_users), np.zeros(n_users)
    for lo in range(0, n_users, batch_size):
        rows = np.arange(lo, min(lo + batch_size, n_users))
        env = RecVectorEnv(data, num_envs=len(rows), top_k=top_k, horizon=horizon, split=split)
        obs, _ = env.reset(options={"users": users[rows]})
        relevant[rows] = env.remaining.numpy()
        n_relevant[rows] = env.n_positives
        for t in range(horizon):
            obs, r, _, _, info = env.step(policy(obs))
            recommended[rows, t * top_k : (t + 1) * top_k] = env.last_recommended.numpy()
            reward[rows] += r
            cost[rows] += info["cost"]
            cost_disc[rows] += gamma_c**t * info["cost"]
    return {
        "recommended": recommended,
        "relevant": relevant,
        "n_relevant": n_relevant,
        "reward": reward,
        "cost": cost,
        "cost_discounted": cost_disc,
    }


def policy_metrics(
    data: RecEnvData,
    policy: PolicyFn,
    top_k: int,
    horizon: int,
    cost_limit: float = float("inf"),
    gamma_c: float = 1.0,
    at: Sequence[int] = (10,),
    split: Split = "test",
) -> dict[str, float]:
    """Ranking metrics at each N in ``at`` (capped at T*K) plus exposure and cost metrics."""
    out = policy_rollout(data, policy, top_k, horizon, split=split, gamma_c=gamma_c)
    return rollout_metrics(out, data, cost_limit, at, top_k=top_k)


def rollout_metrics(
    out: dict[str, np.ndarray], data: RecEnvData, cost_limit: float, at: Sequence[int], top_k: int | None = None
) -> dict[str, float]:
    """Metrics of a rollout (``policy_rollout`` / ``fixed_score_rollout``); ``top_k``: the slate
    size K the exposure metrics split the episode into (None: the whole list is one slate)."""
    recommended = out["recommended"]
    result: dict[str, float] = {}
    for n in sorted({min(int(k), recommended.shape[1]) for k in at}):
        result.update(precision_recall_f1_ndcg_at_k(recommended, out["relevant"], out["n_relevant"], k=n))
    result[GINI] = gini_index(exposure_counts(recommended, data.n_items))
    result[POPULARITY_RATE] = popularity_rate(recommended, data.popular)
    result[REWARD_MEAN] = float(out["reward"].mean())
    result[COST_MEAN] = float(out["cost"].mean())
    result[COST_DISCOUNTED] = float(out["cost_discounted"].mean())
    result[COST_LIMIT] = float(cost_limit)
    result[VIOLATION_RATE] = violation_rate(out["cost_discounted"], cost_limit)
    slates = recommended.reshape(-1, top_k or recommended.shape[1])
    result.update(exposure_metrics(slates, data.n_items, data.train_item_counts(), data.popular))
    return result


def fixed_score_rollout(
    data: RecEnvData,
    scores: np.ndarray,
    top_k: int,
    horizon: int,
    popular_share: float | None = None,
    gamma_c: float = 1.0,
    split: Split = "test",
) -> dict[str, np.ndarray]:
    """The rollout of a non-RL baseline with fixed per-user ``scores`` [n_users, I] (MostPop, MF)
    on the users of ``split`` with a held-out positive.

    Same masking as the env (start state + history; nothing shown twice). With ``popular_share``
    the lists are fairly re-ranked: by step t at most ``floor(share * K * (t + 1))`` popular items
    in total, the freed slots going to the best long-tail items (greedy, score order).
    """
    users = data.eval_users(split)
    probe = RecVectorEnv(data, num_envs=len(users), top_k=top_k, horizon=horizon, split=split)
    probe.reset(options={"users": users})
    relevant = probe.remaining.numpy().copy()
    base = np.where(probe.shown.numpy(), -np.inf, scores[users].astype(np.float64))
    n, rows = len(users), np.arange(len(users))[:, None]
    used = np.zeros(n, np.int64)
    recommended = np.zeros((n, horizon * top_k), np.int64)
    cost, cost_disc = np.zeros(n), np.zeros(n)
    for t in range(horizon):
        if popular_share is None:
            pick = np.argsort(-base, axis=1, kind="stable")[:, :top_k]
        else:
            budget = np.floor(popular_share * top_k * (t + 1) + 1e-9).astype(np.int64) - used
            cand = np.argsort(-base, axis=1, kind="stable")[:, : 2 * top_k + int(data.popular.sum())]
            is_pop = data.popular[cand]
            accept = ~is_pop | (np.cumsum(is_pop, axis=1) <= budget[:, None])
            order = np.argsort(~accept, axis=1, kind="stable")[:, :top_k]  # accepted first, score order kept
            pick = np.take_along_axis(cand, order, axis=1)
        recommended[:, t * top_k : (t + 1) * top_k] = pick
        base[rows, pick] = -np.inf
        c = data.popular[pick].sum(1)
        used += c
        cost += c
        cost_disc += gamma_c**t * c
    hits = np.take_along_axis(relevant, recommended, axis=1)
    return {
        "recommended": recommended,
        "relevant": relevant,
        "n_relevant": relevant.sum(1),
        "reward": hits.sum(1).astype(np.float64),
        "cost": cost,
        "cost_discounted": cost_disc,
    }

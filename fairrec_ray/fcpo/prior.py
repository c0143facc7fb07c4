"""A feasible initial policy: the popular-score offset at which the prior's sampling policy meets d.

The actor starts as the MF fold-in prior (``module.ResidualActor``): mean action
``w(s) = [Q^T sum_j e_j, o]`` where the last coordinate ``o`` multiplies every popular item's
exposure feature, and the sampling policy is ``N(w(s), sigma^2 I)``. At ``o = 0`` it recommends
like MF, whose popular share (~0.9 on ML-100K) is far above any useful limit, and CPO's recovery
steps then spend tens of iterations inside the trust region just to reach d (README, FCPO).
``calibrate_exposure_offset`` instead starts ``o`` where the *sampling* policy's mean discounted
episode cost on the training users is ``target`` (a little under d): one scalar found by bisection
over deterministic rollouts with common random numbers. No Ray.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fairrec_ray.fcpo.env import RecVectorEnv
from fairrec_ray.fcpo.env_data import RecEnvData


def prior_mean(obs: torch.Tensor, query: torch.Tensor, act_dim: int, offset: float = 0.0) -> torch.Tensor:
    """The prior's mean action: ``Q^T`` times the sum of the window's embeddings, then ``offset``
    on the extra (exposure) coordinates. ``obs = [e_1, ..., e_n, t/T]``."""
    dim = query.shape[0]
    window = obs[:, :-1].reshape(obs.shape[0], -1, dim).sum(1)
    mean = torch.full((obs.shape[0], act_dim), float(offset), dtype=obs.dtype)
    mean[:, :dim] = window @ query.T
    return mean


@torch.no_grad()
def sampled_episode_cost(
    data: RecEnvData,
    query: np.ndarray,
    offset: float,
    *,
    top_k: int,
    horizon: int,
    gamma_c: float,
    log_std: float,
    seed: int = 0,
) -> float:
    """Mean discounted episode cost J_C of the prior's Gaussian policy with exposure ``offset``
    over all training users (one episode each; the noise is drawn from ``seed``)."""
    env = RecVectorEnv(data, num_envs=data.n_users, top_k=top_k, horizon=horizon, split="train")
    obs, _ = env.reset(options={"users": np.arange(data.n_users)})
    q = torch.from_numpy(np.asarray(query, np.float32))
    noise = torch.Generator().manual_seed(seed)
    std = math.exp(log_std)
    cost = np.zeros(data.n_users)
    for t in range(horizon):
        mean = prior_mean(torch.from_numpy(obs), q, data.action_dim, offset)
        action = mean + std * torch.randn(mean.shape, generator=noise)
        obs, _, _, _, info = env.step(action.numpy())
        cost += gamma_c**t * info["cost"]
    return float(cost.mean())


def calibrate_exposure_offset(
    data: RecEnvData,
    query: np.ndarray,
    target: float,
    *,
    top_k: int,
    horizon: int,
    gamma_c: float,
    log_std: float,
    seed: int = 0,
    iters: int = 20,
) -> float:
    """The offset ``o <= 0`` whose sampling policy has J_C ~= ``target`` (0 when the plain prior is
    already at or under it). J_C rises with ``o`` (every popular score rises), so: double a lower
    bound until J_C(lo) <= target, then bisect ``iters`` times and return the feasible end."""
    if data.exposure_scale <= 0:
        raise ValueError("calibrate_exposure_offset: the env data has no exposure coordinate (exposure_feature = 0)")

    def cost_at(offset: float) -> float:
        return sampled_episode_cost(
            data, query, offset, top_k=top_k, horizon=horizon, gamma_c=gamma_c, log_std=log_std, seed=seed
        )

    if cost_at(0.0) <= target:
        return 0.0
    lo, hi = -1.0, 0.0
    while cost_at(lo) > target:
        lo, hi = 2 * lo, lo
        if lo < -1e6:
            raise ValueError(f"calibrate_exposure_offset: no offset brings J_C under {target}")
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if cost_at(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo

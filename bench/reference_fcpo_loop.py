"""A single-process, reference-style FCPO iteration: the per-user Python loop of TobyGE/FCPO.

Used only as the throughput baseline of ``bench_fcpo.py``. The MDP is ours (bugs fixed, same
state/action/reward/cost) and the update calls the very same CPO math; what differs is the data
path: one user and one step at a time (a batch-of-one actor forward, numpy scoring, a Python set
for the shown items, per-user GAE), as the reference code does.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from fairrec_ray.fcpo.cpo import (
    backtracking_line_search,
    center,
    conjugate_gradient,
    fisher_vector_product,
    gae,
    solve_cpo_step,
    standardize,
)
from fairrec_ray.fcpo.env_data import RecEnvData
from fairrec_ray.fcpo.module import mlp
from fairrec_ray.fcpo.surrogates import PolicyBatch, policy_terms


class ReferenceAgent(torch.nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, init_log_std: float = -1.0) -> None:
        super().__init__()
        self.pi = mlp(obs_dim, (64, 64), act_dim)
        self.log_std = torch.nn.Parameter(torch.full((act_dim,), init_log_std))
        self.vf = mlp(obs_dim, (64, 64), 1)
        self.cost_vf = mlp(obs_dim, (64, 64), 1)
        self.critic_opt = torch.optim.Adam([*self.vf.parameters(), *self.cost_vf.parameters()], lr=1e-3)

    def actor_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.pi.parameters(), self.log_std]

    def dist_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.pi(obs)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)


def reference_iteration(
    agent: ReferenceAgent,
    data: RecEnvData,
    top_k: int = 10,
    horizon: int = 10,
    cost_limit: float = math.inf,
    gamma: float = 0.99,
    gamma_c: float = 0.99,
    lam: float = 0.95,
    max_kl: float = 0.01,
    critic_iters: int = 20,
) -> dict[str, float]:
    """Sample one episode per training user (per-user loop), then one CPO update. Returns timings."""
    tick = time.perf_counter()
    emb, obs_emb = data.scoring_matrix(), data.item_emb
    obs_l, act_l, rew_l, cost_l, adv_l, cadv_l, ret_l, cret_l, disc_l = ([] for _ in range(9))
    ep_costs = []
    for u in range(data.n_users):
        window = deque(data.train_start[u].tolist(), maxlen=data.n_start)
        shown = set(window)
        lo, hi = data.train_positives.indptr[u], data.train_positives.indptr[u + 1]
        remaining = set(data.train_positives.items[lo:hi].tolist()) - shown
        obs_u, act_u, rew_u, cost_u = [], [], [], []
        for t in range(horizon):
            obs = np.concatenate([obs_emb[list(window)].ravel(), [t / horizon]]).astype(np.float32)
            with torch.no_grad():
                mean = agent.pi(torch.from_numpy(obs)[None])[0]
                w = (mean + agent.log_std.exp() * torch.randn_like(mean)).numpy()
            scores = emb @ w
            scores[list(shown)] = -np.inf
            top = np.argsort(-scores)[:top_k]
            reward = 0.0
            for item in top.tolist():
                shown.add(item)
                if item in remaining:
                    remaining.discard(item)
                    window.append(item)
                    reward += 1.0
            obs_u.append(obs)
            act_u.append(w)
            rew_u.append(reward)
            cost_u.append(float(data.popular[top].sum()))
        obs_t = torch.from_numpy(np.stack(obs_u))
        with torch.no_grad():
            v, vc = agent.vf(obs_t).squeeze(-1).numpy(), agent.cost_vf(obs_t).squeeze(-1).numpy()
        done = np.zeros(horizon)
        done[-1] = 1.0
        a, ret = gae(np.array(rew_u), v, done, gamma, lam)
        ca, cret = gae(np.array(cost_u), vc, done, gamma_c, lam)
        obs_l.append(obs_t)
        act_l.append(np.stack(act_u))
        adv_l.append(a)
        cadv_l.append(ca)
        ret_l.append(ret)
        cret_l.append(cret)
        disc_l.append(gamma_c ** np.arange(horizon))
        ep_costs.append(float(np.sum(np.array(cost_u) * gamma_c ** np.arange(horizon))))
        rew_l.append(sum(rew_u))
        cost_l.append(sum(cost_u))
    sampled = time.perf_counter()

    obs = torch.cat(obs_l)
    f32 = lambda x: torch.as_tensor(np.concatenate(x), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        old = agent.dist_inputs(obs)
    batch = PolicyBatch(obs, f32(act_l), standardize(f32(adv_l)), center(f32(cadv_l)), f32(disc_l), old, data.n_users)
    params = agent.actor_parameters()
    theta0 = parameters_to_vector(params).detach()
    reward_s, cost_s, _ = policy_terms(agent, params, batch)
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(reward_s, params, retain_graph=True)])
    b = torch.cat([x.reshape(-1) for x in torch.autograd.grad(cost_s, params)])
    fvp = fisher_vector_product(lambda: policy_terms(agent, params, batch)[2], params, 0.1)
    c = float(np.mean(ep_costs)) - cost_limit if math.isfinite(cost_limit) else -1e9
    h_g, h_b = conjugate_gradient(fvp, g, 10), conjugate_gradient(fvp, b, 10)
    step = solve_cpo_step(
        g, b, c if math.isfinite(cost_limit) else 0.0, h_g, h_b if math.isfinite(cost_limit) else h_b * 0, max_kl
    )

    def evaluate(flat: torch.Tensor) -> tuple[float, float, float]:
        chunks, offset = [], 0
        for p in params:
            chunks.append(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        with torch.no_grad():
            r, co, kl = policy_terms(agent, chunks, batch)
        return float(r), float(co), float(kl)

    result = backtracking_line_search(
        theta0, step.x, evaluate, max_kl, c,
        baseline=(float(reward_s.detach()), float(cost_s.detach())),
    )  # fmt: skip
    with torch.no_grad():
        vector_to_parameters(result.params, params)
    ret_t, cret_t = f32(ret_l), f32(cret_l)
    for _ in range(critic_iters):
        loss = 0.5 * (
            torch.mean((agent.vf(obs).squeeze(-1) - ret_t) ** 2)
            + torch.mean((agent.cost_vf(obs).squeeze(-1) - cret_t) ** 2)
        )
        agent.critic_opt.zero_grad()
        loss.backward()
        agent.critic_opt.step()
    done_t = time.perf_counter()
    return {
        "transitions": float(data.n_users * horizon),
        "sample_s": sampled - tick,
        "update_s": done_t - sampled,
        "iteration_s": done_t - tick,
        "episode_reward": float(np.mean(rew_l)),
        "episode_cost": float(np.mean(cost_l)),
    }

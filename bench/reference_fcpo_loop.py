"""A single-process, reference-style FCPO iteration: the per-user Python loop of TobyGE/FCPO.

Used only as the throughput baseline of ``bench_fcpo.py``. The MDP is ours (bugs fixed, same
state/action/reward/cost) and the update calls the very same CPO math; what differs is the data
path: one user and one step at a time (a batch-of-one actor forward, numpy scoring, a Python set
for the shown items, per-user GAE), as the reference code does.

Two learner settings, so a comparison can separate what vectorisation buys from what cheaper
learner settings buy:

* ``LEARNER_REFERENCE`` (the reference's compute): plain MLP actor and critics, 20 full-batch
  critic Adam steps, Fisher-vector products on every row;
* ``LEARNER_OURS``: exactly our learner's networks and settings (``FCPOSettings`` defaults): the
  residual fold-in actor, critics with the closed-form per-step baseline, ``critic_iters`` passes
  of ``critic_minibatch_size``-row Adam steps, Fisher products on ``fvp_subsample`` of the rows.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from fairrec_ray.fcpo.advantages import estimate_advantages
from fairrec_ray.fcpo.cpo import backtracking_line_search, conjugate_gradient, fisher_vector_product, solve_cpo_step
from fairrec_ray.fcpo.embeddings import fold_in_query
from fairrec_ray.fcpo.env_data import RecEnvData
from fairrec_ray.fcpo.module import ResidualActor, TimeBaselineCritic, mlp
from fairrec_ray.fcpo.settings import FCPOSettings
from fairrec_ray.fcpo.surrogates import PolicyBatch, policy_terms


@dataclass(frozen=True)
class LearnerSettings:
    name: str
    ours_networks: bool  # residual fold-in actor + per-step-baseline critics (else plain MLPs)
    critic_iters: int
    critic_minibatch_size: int | None  # None: full batch
    fvp_subsample: float


LEARNER_REFERENCE = LearnerSettings("reference", False, 20, None, 1.0)
_OURS = FCPOSettings()
LEARNER_OURS = LearnerSettings("ours", True, _OURS.critic_iters, _OURS.critic_minibatch_size, _OURS.fvp_subsample)


class _PlainActor(torch.nn.Module):
    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.mlp = mlp(obs_dim, (64, 64), act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mlp(obs)


class _PlainCritic(torch.nn.Module):
    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.mlp = mlp(obs_dim, (64, 64), 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mlp(obs).squeeze(-1)


class ReferenceAgent(torch.nn.Module):
    def __init__(self, data: RecEnvData, settings: LearnerSettings, horizon: int = 10) -> None:
        super().__init__()
        obs_dim, act_dim = data.n_start * data.dim + 1, data.action_dim
        self.settings = settings
        if settings.ours_networks:
            query = fold_in_query(data.item_emb, data.mf_reg, data.train_start)
            self.pi: torch.nn.Module = ResidualActor(obs_dim, (64, 64), act_dim, query)
            self.vf: torch.nn.Module = TimeBaselineCritic(obs_dim, (64, 64), horizon)
            self.cost_vf: torch.nn.Module = TimeBaselineCritic(obs_dim, (64, 64), horizon)
        else:
            self.pi, self.vf, self.cost_vf = _PlainActor(obs_dim, act_dim), _PlainCritic(obs_dim), _PlainCritic(obs_dim)
        self.log_std = torch.nn.Parameter(torch.full((act_dim,), _OURS.init_log_std))
        self.critic_opt = torch.optim.Adam([*self.vf.parameters(), *self.cost_vf.parameters()], lr=_OURS.critic_lr)
        self.fvp_rng = torch.Generator().manual_seed(0)

    def actor_parameters(self) -> list[torch.nn.Parameter]:
        return [*self.pi.parameters(), self.log_std]

    def dist_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.pi(obs)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)


def _sample_per_user(agent: ReferenceAgent, data: RecEnvData, top_k: int, horizon: int, gamma_c: float) -> dict:
    """One episode per training user, one user and one step at a time (the reference's data path)."""
    emb, obs_emb = data.scoring_matrix(), data.item_emb
    out: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "cost", "done", "adv", "cadv", "ret", "cret")}
    episode_costs = []
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
            v, vc = agent.vf(obs_t).numpy(), agent.cost_vf(obs_t).numpy()
        done = np.zeros(horizon, bool)
        done[-1] = True
        adv = estimate_advantages(  # per-user GAE, as the reference (normalised over the batch below)
            np.array(rew_u), np.array(cost_u), v, vc, done, gamma_r=0.99, gamma_c=gamma_c, lam=0.95
        )
        out["obs"].append(obs_u)
        out["act"].append(act_u)
        out["rew"].append(rew_u)
        out["cost"].append(cost_u)
        out["ret"].append(adv.reward_targets)
        out["cret"].append(adv.cost_targets)
        episode_costs.append(float(np.sum(np.array(cost_u) * gamma_c ** np.arange(horizon))))
    out["episode_costs"] = episode_costs
    return out


def reference_iteration(
    agent: ReferenceAgent,
    data: RecEnvData,
    top_k: int = 10,
    horizon: int = 10,
    cost_limit: float = math.inf,
    gamma_c: float = 0.99,
    max_kl: float = 0.1,
) -> dict[str, float]:
    """Sample one episode per training user (per-user loop), fit the critics, take one CPO step."""
    settings = agent.settings
    tick = time.perf_counter()
    s = _sample_per_user(agent, data, top_k, horizon, gamma_c)
    sampled = time.perf_counter()

    f32 = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(data.n_users * horizon, -1)  # noqa: E731
    obs, actions = f32(s["obs"]), f32(s["act"])
    ret, cret = f32(s["ret"]).squeeze(-1), f32(s["cret"]).squeeze(-1)
    # critics: the settings' steps, then advantages with the fitted critics (as our learner)
    if settings.ours_networks:
        agent.vf.fit_step_baseline(obs, ret)
        agent.cost_vf.fit_step_baseline(obs, cret)
    n = obs.shape[0]
    size = settings.critic_minibatch_size or n
    for _ in range(settings.critic_iters):
        order = torch.randperm(n) if size < n else torch.arange(n)
        for start in range(0, n, size):
            idx = order[start : start + size]
            loss = 0.5 * (
                torch.mean((agent.vf(obs[idx]) - ret[idx]) ** 2)
                + torch.mean((agent.cost_vf(obs[idx]) - cret[idx]) ** 2)
            )
            agent.critic_opt.zero_grad()
            loss.backward()
            agent.critic_opt.step()
    with torch.no_grad():
        v, vc = agent.vf(obs).numpy(), agent.cost_vf(obs).numpy()
    done = np.tile(np.arange(horizon) == horizon - 1, data.n_users)
    adv = estimate_advantages(
        f32(s["rew"]).reshape(-1).numpy(), f32(s["cost"]).reshape(-1).numpy(), v, vc, done,
        gamma_r=0.99, gamma_c=gamma_c, lam=0.95,
    )  # fmt: skip
    with torch.no_grad():
        old = agent.dist_inputs(obs)
    discount = torch.as_tensor(np.tile(gamma_c ** np.arange(horizon), data.n_users), dtype=torch.float32)
    batch = PolicyBatch(
        obs, actions, torch.from_numpy(adv.reward), torch.from_numpy(adv.cost), discount, old, data.n_users
    )
    params = agent.actor_parameters()
    theta0 = parameters_to_vector(params).detach()
    reward_s, cost_s, _ = policy_terms(agent, params, batch)
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(reward_s, params, retain_graph=True)])
    b = torch.cat([x.reshape(-1) for x in torch.autograd.grad(cost_s, params)])
    fisher_batch = batch.subsample(settings.fvp_subsample, generator=agent.fvp_rng)
    fvp = fisher_vector_product(lambda: policy_terms(agent, params, fisher_batch)[2], params, 0.1)
    c = float(np.mean(s["episode_costs"])) - cost_limit
    step = solve_cpo_step(g, b, c, conjugate_gradient(fvp, g, 10), conjugate_gradient(fvp, b, 10), max_kl)

    def measure(flat: torch.Tensor) -> tuple[float, float, float]:
        chunks, offset = [], 0
        for p in params:
            chunks.append(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        with torch.no_grad():
            r, co, kl = policy_terms(agent, chunks, batch)
        return float(r), float(co), float(kl)

    result = backtracking_line_search(
        theta0, step.x, measure, max_kl, c, baseline=(float(reward_s.detach()), float(cost_s.detach()))
    )
    with torch.no_grad():
        vector_to_parameters(result.params, params)
    done_t = time.perf_counter()
    return {
        "transitions": float(data.n_users * horizon),
        "sample_s": sampled - tick,
        "update_s": done_t - sampled,
        "iteration_s": done_t - tick,
        "episode_reward": float(np.mean(np.sum(s["rew"], axis=1))),
        "episode_cost": float(np.mean(np.sum(s["cost"], axis=1))),
    }

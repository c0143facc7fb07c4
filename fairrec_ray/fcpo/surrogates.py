"""CPO surrogates and KL as pure functions of the actor's parameters (no writes, no logging).

For a Gaussian policy with inputs ``[mean, log_std]`` and ratio ``rho = pi(w|s) / pi_old(w|s)``
(``w`` the sampled action vector):

* reward surrogate ``L_R = mean_rows(rho * A_R)`` (A_R standardised);
* cost surrogate in *episode* units, like ``J_C`` and ``d``:
  ``L_C = (1 / n_episodes) * sum_rows(gamma_c^t * rho * A_C)`` (A_C centred only), the
  importance-sampled estimate of ``J_C(pi) - J_C(pi_old)`` (performance difference lemma);
* ``KL = mean_rows KL(pi_old(.|s) || pi(.|s))`` for diagonal Gaussians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call


@dataclass(frozen=True)
class PolicyBatch:
    obs: torch.Tensor
    actions: torch.Tensor
    reward_adv: torch.Tensor
    cost_adv: torch.Tensor
    cost_weight: torch.Tensor  # gamma_c^t
    old_dist_inputs: torch.Tensor  # [mean, log_std] of the policy that sampled (detached)
    num_episodes: int

    def subsample(self, share: float, generator: torch.Generator | None = None) -> PolicyBatch:
        """A random ``share`` of the rows (all of them when ``share >= 1``); for Fisher products,
        whose mean-KL curvature a row sample estimates without bias."""
        n = self.obs.shape[0]
        keep = max(1, int(round(share * n)))
        if keep >= n:
            return self
        idx = torch.randperm(n, generator=generator)[:keep]
        return PolicyBatch(
            self.obs[idx], self.actions[idx], self.reward_adv[idx], self.cost_adv[idx], self.cost_weight[idx],
            self.old_dist_inputs[idx], self.num_episodes,
        )  # fmt: skip


def gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    z = (actions - mean) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_kl(
    mean0: torch.Tensor, log_std0: torch.Tensor, mean1: torch.Tensor, log_std1: torch.Tensor
) -> torch.Tensor:
    """KL(N0 || N1) per row, summed over action dimensions."""
    var0, var1 = (2 * log_std0).exp(), (2 * log_std1).exp()
    return (log_std1 - log_std0 + (var0 + (mean0 - mean1).pow(2)) / (2 * var1) - 0.5).sum(-1)


def actor_forward(module: Any, params: list[torch.Tensor], obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log_std) with ``params`` = ``module.actor_parameters()`` order substituted."""
    names = [name for name, _ in module.pi.named_parameters()]
    mean = functional_call(module.pi, dict(zip(names, params[:-1], strict=True)), (obs,))
    return mean, params[-1].expand_as(mean)


def policy_terms(module: Any, params: list[torch.Tensor], batch: PolicyBatch) -> tuple[torch.Tensor, ...]:
    """(reward surrogate, cost surrogate, mean KL) at ``params``."""
    mean, log_std = actor_forward(module, params, batch.obs)
    dim = mean.shape[-1]
    old_mean, old_log_std = batch.old_dist_inputs[:, :dim], batch.old_dist_inputs[:, dim:]
    logp = gaussian_log_prob(batch.actions, mean, log_std)
    old_logp = gaussian_log_prob(batch.actions, old_mean, old_log_std)
    ratio = torch.exp(logp - old_logp)
    reward = torch.mean(ratio * batch.reward_adv)
    cost = torch.sum(batch.cost_weight * ratio * batch.cost_adv) / batch.num_episodes
    kl = torch.mean(gaussian_kl(old_mean, old_log_std, mean, log_std))
    return reward, cost, kl

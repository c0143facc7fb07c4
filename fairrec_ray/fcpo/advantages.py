"""Reward and cost advantages for the CPO step: the one implementation (no Ray).

Both training paths reach it through the learner: RLlib's episode path (after its connectors and
the removal of the artificial bootstrap rows) and the columnar path give the same flat layout:
real rows only, episode after episode in time order, ``terminateds`` on each episode's last row.

* GAE (``cpo.gae``) for reward and cost with their own discounts and one lambda; the value
  targets are ``advantages + values`` (the critics' regression targets);
* reward advantages are standardised (``cpo.standardize``: population std);
* cost advantages are only centred (``cpo.center``): rescaling would change the units of the cost
  surrogate, which must match ``c = J_C - d`` (a reference-code bug).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairrec_ray.fcpo.cpo import center, gae, standardize


@dataclass(frozen=True)
class Advantages:
    reward: np.ndarray  # standardised
    cost: np.ndarray  # centred only
    reward_targets: np.ndarray
    cost_targets: np.ndarray


def episode_length(terminateds: np.ndarray) -> int | None:
    """T when the rows are whole episodes of one length T back to back, else None."""
    ends = np.flatnonzero(np.asarray(terminateds, bool))
    if ends.size == 0 or ends[-1] != len(terminateds) - 1:
        return None
    lengths = np.diff(np.concatenate([[-1], ends]))
    return int(lengths[0]) if np.all(lengths == lengths[0]) else None


def gae_targets(
    signal: np.ndarray, values: np.ndarray, terminateds: np.ndarray, gamma: float, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, value targets) over flat rows whose every episode ends on a terminated row.

    Episodes of one length are reshaped to [episodes, T] (GAE vectorised over episodes); others
    run as one concatenated sequence (``cpo.gae`` stops at every terminated row)."""
    terminateds = np.asarray(terminateds, bool)
    if terminateds.size and not terminateds[-1]:
        raise ValueError("gae_targets: the last row must end an episode (FCPO episodes terminate at T)")
    horizon = episode_length(terminateds)
    if horizon is not None:
        shape = (-1, horizon)
        adv, returns = gae(signal.reshape(shape), values.reshape(shape), terminateds.reshape(shape), gamma, lam)
        return adv.reshape(-1), returns.reshape(-1)
    return gae(signal, values, terminateds, gamma, lam)


def estimate_advantages(
    rewards: np.ndarray,
    costs: np.ndarray,
    values: np.ndarray,
    cost_values: np.ndarray,
    terminateds: np.ndarray,
    *,
    gamma_r: float,
    gamma_c: float,
    lam: float,
) -> Advantages:
    """Advantages and value targets of both signals; arrays are flat rows (see the module doc)."""
    reward_adv, reward_targets = gae_targets(rewards, values, terminateds, gamma_r, lam)
    cost_adv, cost_targets = gae_targets(costs, cost_values, terminateds, gamma_c, lam)
    return Advantages(
        reward=standardize(reward_adv).astype(np.float32),
        cost=center(cost_adv).astype(np.float32),
        reward_targets=reward_targets.astype(np.float32),
        cost_targets=cost_targets.astype(np.float32),
    )

"""Constrained Policy Optimization (Achiam et al., 2017) math over flat tensors. No Ray, no state.

Sign conventions used everywhere in this module (the learner must follow them):

* ``g`` = gradient of the *reward* surrogate (higher is better) w.r.t. the flat policy parameters;
* ``b`` = gradient of the *cost* surrogate (lower is better), in the same units as ``c``;
* ``c = J_C(pi_k) - d``: measured cost minus its limit, so ``c > 0`` means the current policy
  violates the constraint;
* ``H`` = Hessian of the mean KL (damped Fisher); the step solves
  ``max_x g.x  s.t.  1/2 x^T H x <= delta,  c + b.x <= 0``  and is applied as
  ``theta_new = theta + x`` (possibly scaled down by the line search).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from fairrec_ray.errors import ConfigError
from fairrec_ray.fcpo.settings import check_alpha

__all__ = [
    "CPOCase",
    "CPOStep",
    "LineSearchResult",
    "backtracking_line_search",
    "center",
    "conjugate_gradient",
    "cost_limit_from_alpha",
    "fisher_vector_product",
    "gae",
    "solve_cpo_step",
    "standardize",
]

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def conjugate_gradient(
    fvp: Callable[[Tensor], Tensor],
    b: Tensor,
    iters: int = 10,
    residual_tol: float = 1e-10,
) -> Tensor:
    """Approximately solve ``H x = b`` for symmetric positive-definite ``H`` given only ``v -> Hv``.

    Standard CG from ``x0 = 0``; stops after ``iters`` products or once ``|r|^2 <= residual_tol``.
    Stops early (returning the current iterate) if ``p^T H p <= 0``, which only happens when
    ``H`` is not positive definite (e.g. undamped Fisher with round-off).
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr <= residual_tol:
            break
        hp = fvp(p)
        php = torch.dot(p, hp)
        if php <= 0:
            break
        alpha = rr / php
        x = x + alpha * p
        r = r - alpha * hp
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(
    kl_fn: Callable[[], Tensor], params: Sequence[Tensor], damping: float
) -> Callable[[Tensor], Tensor]:
    """Return ``v -> (H + damping I) v`` with ``H`` the Hessian of ``kl_fn()`` w.r.t. ``params``.

    ``kl_fn`` must return the scalar mean KL(pi_old || pi_theta) built from the current
    parameters (pi_old detached). Uses double backward: ``H v = d/dtheta (grad KL . v)``. The
    first-order graph is built once and reused; ``torch.autograd.grad`` never writes ``.grad``.
    ``v`` may be float64 while parameters are float32: the product is taken in the parameters'
    dtype and returned in ``v``'s dtype.
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0 (got {damping}); use e.g. 0.1")
    params = list(params)
    kl = kl_fn()
    grads = torch.autograd.grad(kl, params, create_graph=True, allow_unused=True)
    flat_grad = torch.cat(
        [(gr if gr is not None else torch.zeros_like(p)).reshape(-1) for gr, p in zip(grads, params, strict=True)]
    )

    def fvp(v: Tensor) -> Tensor:
        gv = torch.dot(flat_grad, v.to(flat_grad.dtype))
        if not gv.requires_grad:  # KL independent of params: H = 0
            return damping * v
        hv = torch.autograd.grad(gv, params, retain_graph=True, allow_unused=True)
        flat_hv = torch.cat(
            [(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(hv, params, strict=True)]
        )
        return flat_hv.detach().to(v.dtype) + damping * v

    return fvp


class CPOCase(enum.IntEnum):
    """Which branch of the CPO step was taken (numbered like safety-starter-agents' optim_case)."""

    INFEASIBLE_RECOVERY = 0  # c > 0 and c^2/s >= 2 delta: no point of the trust region is safe
    VIOLATED_RECOVERABLE = 1  # c > 0 and c^2/s < 2 delta: dual solve, step must regain safety
    FEASIBLE_ACTIVE = 2  # c <= 0, constraint plane cuts the trust region: dual solve
    FEASIBLE_INACTIVE = 3  # c < 0 and c^2/s >= 2 delta: whole trust region is safe
    UNCONSTRAINED = 4  # s ~ 0: no cost-gradient information, plain natural gradient


@dataclass(frozen=True)
class CPOStep:
    """Solution of the CPO sub-problem; apply as ``theta_new = theta + x``.

    ``x = coef_g * H^-1 g + coef_b * H^-1 b``; ``lam``/``nu`` are the dual variables of the KL
    and cost constraints (``nu`` is the recovery scale ``sqrt(2 delta / s)`` in recovery, where
    ``lam`` is 0). ``predicted_*`` are the quadratic model's values at ``x``: ``g.x``, ``b.x``
    and ``1/2 x^T H x`` (H as seen through the supplied ``H^-1 g``, ``H^-1 b``).
    """

    x: Tensor
    case: CPOCase
    lam: float
    nu: float
    q: float
    r: float
    s: float
    c: float
    coef_g: float
    coef_b: float
    predicted_improvement: float
    predicted_cost_change: float
    predicted_kl: float

    @property
    def constraint_binding(self) -> bool:
        """True when the cost constraint shapes the step (nu > 0)."""
        return self.nu > 0.0


def solve_cpo_step(
    g: Tensor,
    b: Tensor,
    c: float,
    H_inv_g: Tensor,
    H_inv_b: Tensor,
    max_kl: float,
    eps: float = 1e-12,
) -> CPOStep:
    r"""Closed-form solution of ``max_x g.x  s.t.  1/2 x^T H x <= delta,  c + b.x <= 0``.

    With ``q = g^T H^-1 g``, ``r = g^T H^-1 b``, ``s = b^T H^-1 b``, ``delta = max_kl``.
    Lagrangian ``L = g.x - nu (c + b.x) - lam (1/2 x^T H x - delta)``; stationarity gives
    ``x = (1/lam) H^-1 (g - nu b)``. Substituting, the dual (to *minimise* over lam > 0,
    nu >= 0) is ``D(lam, nu) = (q - 2 nu r + nu^2 s) / (2 lam) - nu c + lam delta``.
    (Achiam et al.'s appendix and safety-starter-agents minimise with the loss gradient ``-g``, so
    their ``r`` is our ``-r`` and their ``nu* = (lam c - r)/s`` is our ``(lam c + r)/s``.)

    * ``dD/dnu = 0`` gives ``nu(lam) = max(0, (lam c + r) / s)``.
    * On ``Lambda_a = {lam > 0: lam c + r > 0}`` (nu > 0), with ``A = q - r^2/s >= 0`` and
      ``B = 2 delta - c^2/s``: ``D_a(lam) = (A/lam + B lam)/2 - r c / s``,
      minimised at ``lam_a = sqrt(A/B)`` projected onto ``Lambda_a``.
    * On ``Lambda_b = {lam > 0: lam c + r <= 0}`` (nu = 0): ``D_b(lam) = (q/lam + 2 delta lam)/2``,
      minimised at ``lam_b = sqrt(q / (2 delta))`` projected onto ``Lambda_b``.
    * ``lam* = argmin(D_a(lam_a), D_b(lam_b))`` over the non-empty intervals. Intervals:
      c > 0: ``Lambda_a = (max(0, -r/c), inf)``, ``Lambda_b = (0, -r/c]`` (empty if r >= 0);
      c < 0: ``Lambda_a = (0, -r/c)`` (empty if r <= 0), ``Lambda_b = [max(0, -r/c), inf)``;
      c = 0: ``Lambda_a = (0, inf)`` if r > 0 else empty, ``Lambda_b`` the complement.
    * ``x* = (1/lam*)(H^-1 g - nu* H^-1 b)``. When nu* > 0 this equals
      ``(1/lam*)(H^-1 g - (r/s) H^-1 b) - (c/s) H^-1 b``, which stays finite as lam* -> 0
      (g parallel to b in the H^-1 metric, A = 0), so that form is used.

    Special cases: ``s <= eps`` (no cost gradient) -> natural gradient
    ``x = sqrt(2 delta / q) H^-1 g``; ``c < 0, B <= 0`` (the plane misses the trust region) ->
    the same step; ``c > 0, B <= 0`` (infeasible) -> recovery ``x = -sqrt(2 delta / s) H^-1 b``,
    the minimiser of ``b.x`` over the trust region; ``q <= eps`` (no reward gradient) -> the
    smallest step reaching the constraint plane, ``x = -(max(c, 0)/s) H^-1 b``.
    """
    if not (max_kl > 0 and math.isfinite(max_kl)):
        raise ValueError(f"max_kl must be a finite number > 0 (got {max_kl}); use e.g. 0.01")
    c = float(c)
    if not math.isfinite(c):
        raise ValueError(f"c = J_C - d must be finite (got {c}); check the measured episode cost")
    delta = float(max_kl)
    q = float(torch.dot(g.double(), H_inv_g.double()))
    r = float(torch.dot(g.double(), H_inv_b.double()))
    s = float(torch.dot(b.double(), H_inv_b.double()))
    lam, nu = 0.0, 0.0

    def natural_gradient() -> tuple[float, float, float]:
        if q <= eps:
            return 0.0, 0.0, 0.0
        lam_ng = math.sqrt(q / (2 * delta))
        return 1.0 / lam_ng, 0.0, lam_ng

    B = 2 * delta - c * c / s if s > eps else math.inf
    if s <= eps:
        case = CPOCase.UNCONSTRAINED
        coef_g, coef_b, lam = natural_gradient()
    elif c > 0 and B <= 0:
        case = CPOCase.INFEASIBLE_RECOVERY
        nu = math.sqrt(2 * delta / s)
        coef_g, coef_b = 0.0, -nu
    elif c < 0 and B <= 0:
        case = CPOCase.FEASIBLE_INACTIVE
        coef_g, coef_b, lam = natural_gradient()
    else:
        case = CPOCase.VIOLATED_RECOVERABLE if c > 0 else CPOCase.FEASIBLE_ACTIVE
        if q <= eps:
            coef_g, coef_b = 0.0, -max(c, 0.0) / s
        else:
            lam, nu = _dual_lambda_nu(q, r, s, c, delta, B)
            if nu > 0:
                # finite form of (1/lam)(H^-1 g - nu H^-1 b); see docstring
                A = max(q - r * r / s, 0.0)
                coef_g = 1.0 / lam if lam > 0 else 0.0
                coef_b = -(r / s) * coef_g - c / s
                if A == 0.0:
                    coef_g, coef_b = 0.0, -c / s
            else:
                coef_g, coef_b = 1.0 / lam, 0.0

    x = coef_g * H_inv_g + coef_b * H_inv_b
    return CPOStep(
        x=x,
        case=case,
        lam=lam,
        nu=nu,
        q=q,
        r=r,
        s=s,
        c=c,
        coef_g=coef_g,
        coef_b=coef_b,
        predicted_improvement=coef_g * q + coef_b * r,
        predicted_cost_change=coef_g * r + coef_b * s,
        predicted_kl=0.5 * (coef_g**2 * q + 2 * coef_g * coef_b * r + coef_b**2 * s),
    )


def _dual_lambda_nu(q: float, r: float, s: float, c: float, delta: float, B: float) -> tuple[float, float]:
    """Minimise the CPO dual over lam (B > 0, q > 0, s > 0); return (lam*, nu*)."""
    A = max(q - r * r / s, 0.0)
    # interval bounds (lo, hi) for Lambda_a / Lambda_b; None = empty
    if c > 0:
        lam_a_iv: tuple[float, float] | None = (max(0.0, -r / c), math.inf)
        lam_b_iv: tuple[float, float] | None = (0.0, -r / c) if r < 0 else None
    elif c < 0:
        lam_a_iv = (0.0, -r / c) if r > 0 else None
        lam_b_iv = (max(0.0, -r / c), math.inf)
    else:
        lam_a_iv = (0.0, math.inf) if r > 0 else None
        lam_b_iv = None if r > 0 else (0.0, math.inf)

    def proj(v: float, iv: tuple[float, float]) -> float:
        return min(max(v, iv[0]), iv[1])

    def d_a(lam: float) -> float:
        a_term = 0.0 if A == 0.0 else (A / lam if lam > 0 else math.inf)
        return 0.5 * (a_term + B * lam) - r * c / s

    def d_b(lam: float) -> float:
        return 0.5 * (q / lam + 2 * delta * lam) if lam > 0 else math.inf

    candidates: list[tuple[float, float]] = []  # (dual value, lam)
    if lam_a_iv is not None:
        lam_a = proj(math.sqrt(A / B), lam_a_iv)
        candidates.append((d_a(lam_a), lam_a))
    if lam_b_iv is not None:
        lam_b = proj(math.sqrt(q / (2 * delta)), lam_b_iv)
        candidates.append((d_b(lam_b), lam_b))
    _, lam = min(candidates)
    nu = max(0.0, (lam * c + r) / s)
    return lam, nu


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of :func:`backtracking_line_search`.

    ``params`` are the accepted parameters (``theta0`` when nothing was accepted);
    ``step_fraction`` is the accepted multiple of the full step (0.0 on failure);
    ``n_backtracks`` counts rejected candidates; the measured values are those of the returned
    parameters relative to ``theta0`` (all 0.0 on failure).
    """

    params: Tensor
    accepted: bool
    step_fraction: float
    n_backtracks: int
    reward_improvement: float
    cost_change: float
    kl: float


def backtracking_line_search(
    theta0: Tensor,
    full_step: Tensor,
    evaluate: Callable[[Tensor], tuple[float, float, float]],
    max_kl: float,
    c: float,
    *,
    decay: float = 0.8,
    max_steps: int = 15,
    kl_slack: float = 1.0,
    baseline: tuple[float, float] | None = None,
) -> LineSearchResult:
    """Try ``theta0 + decay^i * full_step`` for i = 0..max_steps-1; accept the first that passes.

    ``evaluate(params) -> (reward_surrogate, cost_surrogate, mean_kl)`` at ``params`` (no side
    effects). A candidate is accepted when, measured at exactly the parameters returned:

    * ``kl <= kl_slack * max_kl`` (always);
    * ``cost_surrogate - cost0 <= max(-c, 0)`` (always): stays linearly feasible if ``c <= 0``,
      does not increase cost if already violating (``c > 0``);
    * ``reward_surrogate - reward0 >= 0`` only when the current policy is feasible (``c <= 0``:
      ``FEASIBLE_*`` and ``UNCONSTRAINED`` with ``c = -inf``). When it violates the limit
      (``INFEASIBLE_RECOVERY``, ``VIOLATED_RECOVERABLE``) the step must first restore
      feasibility and may give up reward: Achiam et al. 2017 and safety-starter-agents'
      ``optim_case > 1`` rule.

    ``baseline = (reward0, cost0)`` avoids one extra ``evaluate(theta0)``. Non-finite
    measurements reject the candidate. On failure ``theta0`` is returned with ``accepted=False``.
    """
    if not 0 < decay < 1:
        raise ValueError(f"decay must be in (0, 1) (got {decay}); use e.g. 0.8")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 (got {max_steps}); use e.g. 15")
    if baseline is not None:
        reward0, cost0 = baseline
    else:
        reward0, cost0, _ = evaluate(theta0)
    check_reward = float(c) <= 0
    cost_budget = max(-float(c), 0.0)
    kl_limit = kl_slack * max_kl
    for i in range(max_steps):
        frac = decay**i
        candidate = theta0 + frac * full_step
        reward, cost, kl = evaluate(candidate)
        d_reward, d_cost = reward - reward0, cost - cost0
        if not all(math.isfinite(v) for v in (d_reward, d_cost, kl)):
            continue
        if kl <= kl_limit and (d_reward >= 0 or not check_reward) and d_cost <= cost_budget:
            return LineSearchResult(candidate, True, frac, i, d_reward, d_cost, kl)
    return LineSearchResult(theta0.clone(), False, 0.0, max_steps, 0.0, 0.0, 0.0)


def gae(
    rewards: ArrayT,
    values: ArrayT,
    terminateds: ArrayT,
    gamma: float,
    lam: float,
    bootstrap_value: ArrayT | float = 0.0,
) -> tuple[ArrayT, ArrayT]:
    """Generalized advantage estimation over the last axis ([T] or [N, T]); numpy or torch.

    ``delta_t = r_t + gamma (1 - term_t) V_{t+1} - V_t`` and
    ``A_t = delta_t + gamma lam (1 - term_t) A_{t+1}``, with ``V_T = bootstrap_value`` (the value
    of the state after the last step; 0 for a terminal one). ``terminateds[t] = 1`` means the
    episode ended after step t, so neither value nor advantage flows across it (several episodes
    may be concatenated along T). Returns ``(advantages, returns = advantages + values)``, the
    latter being the critic's regression target.
    """
    is_torch = isinstance(rewards, Tensor)
    rewards_f: Any
    values_f: Any
    notdone: Any
    next_v: Any
    adv: Any
    last: Any
    if is_torch:
        rewards_f = torch.as_tensor(rewards).double()
        values_f = torch.as_tensor(values).double()
        notdone = 1.0 - torch.as_tensor(terminateds).double()
        next_v = torch.as_tensor(bootstrap_value, dtype=torch.float64).expand(rewards_f.shape[:-1])
        adv = torch.zeros_like(rewards_f)
        last = torch.zeros_like(next_v)
    else:
        rewards_f = np.asarray(rewards, dtype=np.float64)
        values_f = np.asarray(values, dtype=np.float64)
        notdone = 1.0 - np.asarray(terminateds, dtype=np.float64)
        next_v = np.broadcast_to(np.asarray(bootstrap_value, dtype=np.float64), rewards_f.shape[:-1])
        adv = np.zeros_like(rewards_f)
        last = np.zeros_like(next_v)
    if values_f.shape != rewards_f.shape or notdone.shape != rewards_f.shape:
        raise ValueError(
            f"rewards, values and terminateds must share one shape [T] or [N, T] (got "
            f"{tuple(rewards_f.shape)}, {tuple(values_f.shape)}, {tuple(notdone.shape)})"
        )
    for t in range(rewards_f.shape[-1] - 1, -1, -1):
        nd = notdone[..., t]
        delta = rewards_f[..., t] + gamma * nd * next_v - values_f[..., t]
        last = delta + gamma * lam * nd * last
        adv[..., t] = last
        next_v = values_f[..., t]
    returns = adv + values_f
    if is_torch:
        return adv.to(rewards.dtype), returns.to(rewards.dtype)
    return adv, returns


def standardize(x: ArrayT, eps: float = 1e-8) -> ArrayT:
    """``(x - mean) / (std + eps)`` over all elements (population std). For reward advantages."""
    if isinstance(x, Tensor):
        return (x - x.mean()) / (x.std(correction=0) + eps)
    return (x - x.mean()) / (x.std() + eps)


def center(x: ArrayT) -> ArrayT:
    """``x - mean(x)``. Cost advantages are only centred: rescaling would change the units that
    ``c = J_C - d`` is measured in, and so the constraint itself."""
    return x - x.mean()


def cost_limit_from_alpha(alpha: float, k: int, horizon: int, gamma_c: float = 1.0) -> float:
    """Per-episode cost limit ``d`` for "popular share of recommendations <= alpha' = alpha/(1+alpha)".

    ``d = sum_{t<T} gamma_c^t * alpha' * K = alpha' K (1 - gamma_c^T) / (1 - gamma_c)``
    (``= alpha' K T`` for ``gamma_c = 1``), with K items recommended per step and T steps.
    """
    if alpha is None:
        raise ConfigError("alpha: got None; a cost limit needs a finite number > 0")
    check_alpha(float(alpha) if isinstance(alpha, np.floating) else alpha)
    if k < 1 or horizon < 1:
        raise ValueError(f"k and horizon must be >= 1 (got k={k}, horizon={horizon})")
    if not 0 < gamma_c <= 1:
        raise ValueError(f"gamma_c must be in (0, 1] (got {gamma_c}); use 1.0 for an undiscounted limit")
    share = alpha / (1.0 + alpha)
    if gamma_c == 1.0:
        return share * k * horizon
    return share * k * (1.0 - gamma_c**horizon) / (1.0 - gamma_c)

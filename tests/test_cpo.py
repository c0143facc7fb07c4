"""Unit tests of the Ray-free CPO math against numpy / scipy / autograd references."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.optimize import minimize

from fairrec_ray.errors import ConfigError
from fairrec_ray.fcpo.cpo import (
    CPOCase,
    backtracking_line_search,
    center,
    conjugate_gradient,
    cost_limit_from_alpha,
    fisher_vector_product,
    gae,
    solve_cpo_step,
    standardize,
)


@pytest.fixture(autouse=True)
def _float64():
    """The solver checks need float64; restore the default so other test modules see float32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _spd(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.normal(size=(n, n))
    return a @ a.T + 0.1 * np.eye(n)


# ---------------------------------------------------------------- conjugate gradient / Fisher


@pytest.mark.parametrize("seed", range(5))
def test_conjugate_gradient_matches_solve(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    h, b = _spd(rng, n), rng.normal(size=n)
    ht = torch.tensor(h)
    x = conjugate_gradient(lambda v: ht @ v, torch.tensor(b), iters=4 * n, residual_tol=1e-24)
    assert_allclose(x.numpy(), np.linalg.solve(h, b), rtol=1e-6, atol=1e-8)


def test_conjugate_gradient_zero_rhs_returns_zero() -> None:
    x = conjugate_gradient(lambda v: 2 * v, torch.zeros(3))
    assert torch.equal(x, torch.zeros(3))


def _tiny_policy() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    obs = torch.randn(7, 3)
    with torch.no_grad():
        old_logp = torch.log_softmax(net(obs) + 0.3 * torch.randn(7, 3), dim=-1)
    return net, obs, old_logp


def test_fisher_vector_product_matches_autograd_hessian() -> None:
    net, obs, old_logp = _tiny_policy()
    params = list(net.parameters())
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def mean_kl_of(flat: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(flat, sizes)
        w1, b1, w2, b2 = (ch.reshape(s) for ch, s in zip(chunks, shapes, strict=True))
        logits = torch.tanh(obs @ w1.T + b1) @ w2.T + b2
        logp = torch.log_softmax(logits, dim=-1)
        return (old_logp.exp() * (old_logp - logp)).sum(-1).mean()

    def kl_fn() -> torch.Tensor:
        logp = torch.log_softmax(net(obs), dim=-1)
        return (old_logp.exp() * (old_logp - logp)).sum(-1).mean()

    flat0 = torch.cat([p.detach().reshape(-1) for p in params])
    hess = torch.autograd.functional.hessian(mean_kl_of, flat0)
    damping = 0.1
    fvp = fisher_vector_product(kl_fn, params, damping)
    v = torch.randn(flat0.numel())
    assert_allclose(fvp(v).numpy(), (hess @ v + damping * v).numpy(), rtol=1e-8, atol=1e-10)
    # reusable, float32 vectors come back as float32, and no .grad is written
    assert_allclose(fvp(2 * v).numpy(), 2 * (hess @ v + damping * v).numpy(), rtol=1e-8, atol=1e-10)
    assert fvp(v.float()).dtype == torch.float32
    assert all(p.grad is None for p in params)


# ---------------------------------------------------------------- CPO step vs independent solvers


def _geometric_oracle(h: np.ndarray, g: np.ndarray, b: np.ndarray, c: float, delta: float) -> np.ndarray:
    """Exact maximiser by geometry in whitened coordinates y = L^T x (H = L L^T): a linear
    objective over a ball cut by a half-space; infeasible -> minimiser of b.x over the ball."""
    chol = np.linalg.cholesky(h)
    gt, bt = np.linalg.solve(chol, g), np.linalg.solve(chol, b)
    radius = math.sqrt(2 * delta)
    to_x = lambda y: np.linalg.solve(chol.T, y)  # noqa: E731
    y_unc = radius * gt / np.linalg.norm(gt)
    if np.linalg.norm(bt) == 0:
        return to_x(y_unc)
    e1 = bt / np.linalg.norm(bt)
    u0 = -c / np.linalg.norm(bt)  # feasible half-space: e1.y <= u0
    if u0 < -radius:
        return to_x(-radius * e1)
    if e1 @ y_unc <= u0:
        return to_x(y_unc)
    g_perp = gt - (gt @ e1) * e1
    e2 = g_perp / np.linalg.norm(g_perp)
    return to_x(u0 * e1 + math.sqrt(radius**2 - u0**2) * e2)


def _slsqp(h: np.ndarray, g: np.ndarray, b: np.ndarray, c: float, delta: float, rng: np.random.Generator) -> np.ndarray:
    """Multi-start SLSQP on the same QP (or on min b.x over the trust region if infeasible)."""
    infeasible = c > 0 and c * c / (b @ np.linalg.solve(h, b)) > 2 * delta
    obj, grad = ((lambda x: b @ x), (lambda x: b)) if infeasible else ((lambda x: -g @ x), (lambda x: -g))
    cons = [{"type": "ineq", "fun": lambda x: delta - 0.5 * x @ h @ x, "jac": lambda x: -h @ x}]
    if not infeasible:
        cons.append({"type": "ineq", "fun": lambda x: -(c + b @ x), "jac": lambda x: -b})
    best = None
    for x0 in (0.01 * rng.normal(size=g.size), -0.01 * np.linalg.solve(h, b)):
        res = minimize(obj, x0, jac=grad, constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        ok = 0.5 * res.x @ h @ res.x <= delta * (1 + 1e-6) and (infeasible or c + b @ res.x <= 1e-8)
        if ok and (best is None or obj(res.x) < obj(best)):
            best = res.x
    assert best is not None
    return best


_TARGETS = ["recovery", "violated", "active", "inactive", "no_cost_grad"]


def _random_problem(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    rng = np.random.default_rng(1000 + i)
    n = int(rng.integers(2, 7))
    h, g, b = _spd(rng, n), rng.normal(size=n), rng.normal(size=n)
    delta = float(rng.uniform(0.002, 0.05))
    target = _TARGETS[i % len(_TARGETS)]
    if target == "no_cost_grad":
        b = np.zeros(n)
        return h, g, b, -abs(float(rng.normal())), delta  # b = 0, c > 0 is tested apart
    edge = math.sqrt(2 * delta * (b @ np.linalg.solve(h, b)))  # |c| at which the plane touches the ball
    scale = {
        "recovery": rng.uniform(1.05, 3.0),
        "violated": rng.uniform(0.02, 0.98),
        "active": -rng.uniform(0.0, 0.98),
        "inactive": -rng.uniform(1.05, 3.0),
    }[target]
    return h, g, b, float(scale * edge), delta


N_PROBLEMS = 300


def _solve(h: np.ndarray, g: np.ndarray, b: np.ndarray, c: float, delta: float):
    return solve_cpo_step(
        torch.tensor(g),
        torch.tensor(b),
        c,
        torch.tensor(np.linalg.solve(h, g)),
        torch.tensor(np.linalg.solve(h, b)),
        delta,
    )


def test_solve_cpo_step_matches_geometric_oracle_on_random_problems() -> None:
    cases: Counter[CPOCase] = Counter()
    subcases: Counter[str] = Counter()
    for i in range(N_PROBLEMS):
        h, g, b, c, delta = _random_problem(i)
        step = _solve(h, g, b, c, delta)
        cases[step.case] += 1
        x_ref = _geometric_oracle(h, g, b, c, delta)
        assert np.linalg.norm(step.x.numpy() - x_ref) <= 1e-6 * np.linalg.norm(x_ref), (i, step.case)
        x = step.x.numpy()
        assert_allclose(step.predicted_kl, 0.5 * x @ h @ x, rtol=1e-9)
        assert_allclose(step.predicted_improvement, g @ x, rtol=1e-9, atol=1e-12)
        assert_allclose(step.predicted_cost_change, b @ x, rtol=1e-9, atol=1e-12)
        assert step.predicted_kl <= delta * (1 + 1e-9)
        if step.case in (CPOCase.VIOLATED_RECOVERABLE, CPOCase.FEASIBLE_ACTIVE):
            assert c + b @ x <= 1e-9 * abs(c) + 1e-12
            subcases[f"nu>0={step.nu > 0},r>0={step.r > 0},c>0={c > 0}"] += 1
    assert min(cases[k] for k in CPOCase) >= 40, cases
    # dual sub-cases, incl. the r/c <= 0 ones (nu = 0 with c < 0 and r <= 0 / r > 0 ...)
    for key in ("nu>0=True,r>0=True,c>0=True", "nu>0=True,r>0=False,c>0=True", "nu>0=True,r>0=True,c>0=False",
                "nu>0=False,r>0=False,c>0=False", "nu>0=False,r>0=True,c>0=False"):  # fmt: skip
        assert subcases[key] >= 6, subcases


def test_solve_cpo_step_matches_slsqp() -> None:
    rng = np.random.default_rng(7)
    for i in range(200):  # every case 40 times
        h, g, b, c, delta = _random_problem(i)
        x = _solve(h, g, b, c, delta).x.numpy()
        x_ref = _slsqp(h, g, b, c, delta, rng)
        assert np.linalg.norm(x - x_ref) <= 1e-4 * np.linalg.norm(x_ref), (i, x, x_ref)


def test_solve_cpo_step_degenerate_inputs() -> None:
    eye = torch.eye(3)
    g, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    # no reward gradient, violated: smallest step onto the constraint plane
    step = solve_cpo_step(torch.zeros(3), b, 0.05, torch.zeros(3), b, max_kl=0.01)
    assert step.case == CPOCase.VIOLATED_RECOVERABLE
    assert_allclose(step.x.numpy(), [0.0, -0.05, 0.0])
    # g parallel to b (A = 0), violated: the plane is reached exactly
    step = solve_cpo_step(b, b, 0.05, b, b, max_kl=0.01)
    assert_allclose(0.05 + float(b @ step.x), 0.0, atol=1e-12)
    # nothing at all: zero step
    step = solve_cpo_step(torch.zeros(3), torch.zeros(3), -1.0, torch.zeros(3), torch.zeros(3), 0.01)
    assert step.case == CPOCase.UNCONSTRAINED and torch.equal(step.x, torch.zeros(3))
    # no cost gradient: plain natural gradient on the trust-region boundary
    step = solve_cpo_step(g, torch.zeros(3), 1.0, eye @ g, torch.zeros(3), 0.02)
    assert_allclose(step.x.numpy(), [0.2, 0.0, 0.0])
    with pytest.raises(ValueError, match="max_kl must be"):
        solve_cpo_step(g, b, 0.0, g, b, max_kl=0.0)


# ---------------------------------------------------------------- line search


class _Recorder:
    """Quadratic toy: reward = w.theta, cost = v.theta, kl = 1/2 |theta - theta0|^2."""

    def __init__(self, theta0: torch.Tensor, w: torch.Tensor, v: torch.Tensor) -> None:
        self.theta0, self.w, self.v = theta0, w, v
        self.seen: list[torch.Tensor] = []

    def __call__(self, theta: torch.Tensor) -> tuple[float, float, float]:
        self.seen.append(theta.clone())
        d = theta - self.theta0
        return float(self.w @ theta), float(self.v @ theta), float(0.5 * d @ d)


def test_line_search_accepts_good_step_at_full_fraction() -> None:
    theta0 = torch.zeros(2)
    ev = _Recorder(theta0, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    res = backtracking_line_search(theta0, torch.tensor([0.1, 0.0]), ev, max_kl=0.01, c=-1.0)
    assert res.accepted and res.step_fraction == 1.0 and res.n_backtracks == 0
    assert_allclose(res.params.numpy(), [0.1, 0.0])
    assert_allclose([res.reward_improvement, res.cost_change, res.kl], [0.1, 0.0, 0.005])


def test_line_search_backtracks_kl_violation_and_returns_tested_step() -> None:
    theta0 = torch.tensor([1.0, -1.0])
    ev = _Recorder(theta0, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    full = torch.tensor([1.0, 0.0])  # kl(f) = f^2 / 2 <= 0.1  <=>  f <= 0.447; 0.8^4 = 0.41
    res = backtracking_line_search(theta0, full, ev, max_kl=0.1, c=-1.0, baseline=(1.0, -1.0))
    assert res.accepted and res.n_backtracks == 4
    assert_allclose(res.step_fraction, 0.8**4)
    assert torch.equal(ev.seen[-1], res.params)  # the returned params are the ones measured
    assert_allclose(res.params.numpy(), (theta0 + 0.8**4 * full).numpy())
    assert_allclose(res.kl, 0.5 * 0.8**8)


def test_line_search_rejects_when_nothing_passes() -> None:
    theta0 = torch.zeros(2)
    ev = _Recorder(theta0, torch.tensor([-1.0, 0.0]), torch.tensor([0.0, 1.0]))
    res = backtracking_line_search(theta0, torch.tensor([0.01, 0.0]), ev, max_kl=1.0, c=-1.0, max_steps=6)
    assert not res.accepted and res.step_fraction == 0.0 and res.n_backtracks == 6
    assert torch.equal(res.params, theta0) and len(ev.seen) == 1 + 6


def test_line_search_cost_rule_always_reward_rule_only_when_feasible() -> None:
    theta0 = torch.zeros(2)
    ev = _Recorder(theta0, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    down = torch.tensor([-0.05, -0.05])  # reward falls, cost falls
    assert not backtracking_line_search(theta0, down, ev, 0.01, c=-0.5, max_steps=3).accepted  # feasible
    res = backtracking_line_search(theta0, down, ev, 0.01, c=0.5)  # violated: reward not required
    assert res.accepted and res.step_fraction == 1.0 and res.cost_change < 0
    # feasible: cost may rise by at most -c; violated: it may not rise at all (whatever the reward)
    up = torch.tensor([0.05, 0.05])
    assert backtracking_line_search(theta0, up, ev, 0.01, c=-0.06).step_fraction == 1.0
    assert_allclose(backtracking_line_search(theta0, up, ev, 0.01, c=-0.03).step_fraction, 0.8**3)  # 0.05 f <= 0.03
    assert not backtracking_line_search(theta0, up, ev, 0.01, c=0.01).accepted
    # the KL bound holds in every case
    big = torch.tensor([-1.0, -1.0])
    assert backtracking_line_search(theta0, big, ev, 0.01, c=0.5).kl <= 0.01


def test_violated_recoverable_step_is_accepted_though_it_costs_reward() -> None:
    """Achiam et al.: when c > 0 the step must restore feasibility; the line search checks KL and
    the cost surrogate, not the reward. Here every feasible direction lowers the reward (g and b
    nearly parallel), so a line search that also demanded reward improvement (the old rule
    outside INFEASIBLE_RECOVERY) rejected every candidate and the policy stayed infeasible."""
    g, b = np.array([1.0, 0.0]), np.array([1.0, 0.2])
    h, delta, c = np.eye(2), 0.01, 0.05
    step = _solve(h, g, b, c, delta)
    assert step.case == CPOCase.VIOLATED_RECOVERABLE and step.predicted_improvement < 0
    theta0 = torch.zeros(2)
    ev = _Recorder(theta0, torch.tensor(g), torch.tensor(b))
    res = backtracking_line_search(theta0, step.x, ev, delta, c)
    assert res.accepted and res.step_fraction == 1.0
    assert res.reward_improvement < 0
    assert_allclose(c + res.cost_change, 0.0, atol=1e-9)  # lands on the constraint plane: feasible again


# ---------------------------------------------------------------- GAE and advantage helpers


def _gae_loop(r, v, d, boot, gamma, lam):
    adv, nxt_v, nxt_a = [0.0] * len(r), boot, 0.0
    for t in reversed(range(len(r))):
        nd = 1.0 - d[t]
        delta = r[t] + gamma * nd * nxt_v - v[t]
        nxt_a = delta + gamma * lam * nd * nxt_a
        adv[t], nxt_v = nxt_a, v[t]
    return adv


def test_gae_three_steps_by_hand() -> None:
    r, v, gamma, lam = [1.0, 0.0, 2.0], [0.5, 0.4, 0.3], 0.9, 0.8
    d2 = 2.0 - 0.3
    d1 = 0.0 + 0.9 * 0.3 - 0.4
    d0 = 1.0 + 0.9 * 0.4 - 0.5
    a2 = d2
    a1 = d1 + 0.72 * a2
    a0 = d0 + 0.72 * a1
    adv, ret = gae(np.array(r), np.array(v), np.array([0, 0, 1]), gamma, lam)
    assert_allclose(adv, [a0, a1, a2])
    assert_allclose(ret, np.array([a0, a1, a2]) + v)


def test_gae_batched_torch_matches_loop_with_boundaries() -> None:
    rng = np.random.default_rng(3)
    r, v = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    d = (rng.random((4, 6)) < 0.3).astype(float)
    boot = rng.normal(size=4)
    adv, ret = gae(torch.tensor(r), torch.tensor(v), torch.tensor(d), 0.99, 0.95, torch.tensor(boot))
    for n in range(4):
        assert_allclose(adv[n].numpy(), _gae_loop(r[n], v[n], d[n], boot[n], 0.99, 0.95))
    assert_allclose(ret.numpy(), adv.numpy() + v)
    with pytest.raises(ValueError, match="share one shape"):
        gae(np.zeros(3), np.zeros(4), np.zeros(3), 0.9, 0.9)


def test_standardize_and_center() -> None:
    x = np.array([1.0, 2.0, 3.0, 6.0])
    z = standardize(x)
    assert_allclose([z.mean(), z.std()], [0.0, 1.0], atol=1e-7)
    zt = standardize(torch.tensor(x))
    assert_allclose(zt.numpy(), z)
    assert_allclose(center(x), x - 3.0)
    assert_allclose(center(torch.tensor(x)).numpy(), x - 3.0)


# ---------------------------------------------------------------- cost limit


def test_cost_limit_from_alpha_closed_forms() -> None:
    assert_allclose(cost_limit_from_alpha(1.0, k=10, horizon=10), 0.5 * 10 * 10)
    assert_allclose(cost_limit_from_alpha(0.25, k=5, horizon=3, gamma_c=0.5), 0.2 * 5 * (1 + 0.5 + 0.25))
    assert_allclose(
        cost_limit_from_alpha(0.5, k=10, horizon=10, gamma_c=0.99),
        sum(0.99**t for t in range(10)) * (1 / 3) * 10,
    )


@pytest.mark.parametrize("alpha", [0.0, -0.1, float("nan")])
def test_cost_limit_from_alpha_rejects_nonpositive(alpha: float) -> None:
    with pytest.raises(ConfigError, match=r"alpha: got .*; expected a finite number > 0"):
        cost_limit_from_alpha(alpha, k=10, horizon=10)
    with pytest.raises(ValueError, match="gamma_c must be in"):
        cost_limit_from_alpha(0.5, k=10, horizon=10, gamma_c=0.0)

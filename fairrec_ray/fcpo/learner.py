"""``FCPOTorchLearner``: critic regression, advantages, then one CPO step for the actor.

The learner orchestrates; the math lives in ``fcpo.advantages`` (GAE, reward standardised, cost
centred), ``fcpo.cpo`` (CG, damped Fisher products, the CPO sub-problem, the line search) and
``fcpo.surrogates`` (surrogates and KL as pure functions of the actor's parameters). ``_update``
replaces RLlib's optimizer step:

1. value targets with the current critics; fit both critics (closed-form per-step baseline, then
   Adam on their MLPs); advantages with the fitted critics;
2. g = grad of the reward surrogate, b = grad of the cost surrogate (``torch.autograd.grad``);
3. H^-1 g, H^-1 b by conjugate gradient on damped Fisher-vector products (double backward of KL);
4. ``solve_cpo_step`` with c = J_C - d (J_C arrives in ``timesteps``: the batch's mean discounted
   episode cost), then a backtracking line search that measures, at exactly the parameters it
   would apply, KL <= delta and the cost surrogate (see ``cpo.backtracking_line_search``);
5. write the accepted parameters in place.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.connectors.learner import AddOneTsToEpisodesAndTruncate
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from fairrec_ray.fcpo import keys
from fairrec_ray.fcpo.advantages import estimate_advantages
from fairrec_ray.fcpo.connectors import AddCostsFromInfos
from fairrec_ray.fcpo.cpo import (
    CPOCase,
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    solve_cpo_step,
)
from fairrec_ray.fcpo.surrogates import PolicyBatch, policy_terms


class FCPOTorchLearner(TorchLearner):
    def build(self) -> None:
        threads = getattr(self.config, "learner_torch_threads", 1)
        if threads:
            # Small MLPs on ~10k rows: one thread is fastest, and far faster on a loaded machine
            # (measured: README, FCPO benchmark).
            torch.set_num_threads(int(threads))
        super().build()
        self._episode_cost = 0.0
        self._num_episodes = 1
        self._fvp_rng = torch.Generator().manual_seed(int(self.config.seed or 0))
        if self._learner_connector is not None and self.config.add_default_connectors_to_learner_pipeline:
            self._learner_connector.prepend(AddOneTsToEpisodesAndTruncate())
            self._learner_connector.insert_after(
                AddOneTsToEpisodesAndTruncate, AddCostsFromInfos(gamma_c=self.config.gamma_c)
            )

    @classmethod
    def rl_module_required_apis(cls) -> list[type]:
        return [ValueFunctionAPI]

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        # Only the critics get an optimizer: the actor moves by the CPO step alone.
        params = self._module[module_id].critic_parameters()
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params),
            params=params,
            lr_or_lr_schedule=config.critic_lr,
        )

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self._episode_cost = float(timesteps.get(keys.TS_EPISODE_COST, 0.0))
        self._num_episodes = max(1, int(timesteps.get(keys.TS_NUM_EPISODES, 1)))

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any], fwd_out: Any) -> Any:
        """Critic regression: 0.5 * MSE(V_R, reward targets) + 0.5 * MSE(V_C, cost targets)."""
        module = self.module[module_id].unwrapped()
        loss_r = torch.mean((module.compute_values(batch) - batch[Columns.VALUE_TARGETS]) ** 2)
        loss_c = torch.mean((module.compute_cost_values(batch) - batch[keys.COST_VALUE_TARGETS]) ** 2)
        return 0.5 * (loss_r + loss_c)

    def _update(self, batch: dict[str, Any], **kwargs: Any) -> tuple[Any, Any, Any]:
        module_id = DEFAULT_MODULE_ID
        module = self.module[module_id].unwrapped()
        config = self.config.get_config_for_module(module_id)
        rows = real_rows(batch[module_id])
        # Targets from the current critics, fit the critics, then advantages from the fitted
        # critics for the CPO step: with the old critics' advantages the first iterations' cost
        # advantages were time-structure noise (std 21 vs a per-step cost std of 0.9).
        self._set_advantages(module, rows, config)
        loss = self._fit_critics(module_id, rows, config)
        self._set_advantages(module, rows, config)
        self._cpo_step(module, rows, config)
        return {}, {module_id: loss}, {}

    def _set_advantages(self, module: Any, rows: dict[str, Any], config: Any) -> None:
        with torch.no_grad():
            values, cost_values = module.compute_values(rows), module.compute_cost_values(rows)
        adv = estimate_advantages(
            _np(rows[Columns.REWARDS]), _np(rows[keys.COSTS]), _np(values), _np(cost_values),
            _np(rows[Columns.TERMINATEDS]), gamma_r=config.gamma_r, gamma_c=config.gamma_c, lam=config.gae_lambda,
        )  # fmt: skip
        device = values.device
        rows[Columns.ADVANTAGES] = torch.from_numpy(adv.reward).to(device)
        rows[keys.COST_ADVANTAGES] = torch.from_numpy(adv.cost).to(device)
        rows[Columns.VALUE_TARGETS] = torch.from_numpy(adv.reward_targets).to(device)
        rows[keys.COST_VALUE_TARGETS] = torch.from_numpy(adv.cost_targets).to(device)

    def _cpo_step(self, module: Any, rows: dict[str, Any], config: Any) -> None:
        with torch.no_grad():
            old = module.dist_inputs(rows[Columns.OBS])
        data = PolicyBatch(
            obs=rows[Columns.OBS],
            actions=rows[Columns.ACTIONS],
            reward_adv=rows[Columns.ADVANTAGES],
            cost_adv=rows[keys.COST_ADVANTAGES],
            cost_weight=rows[keys.COST_DISCOUNT],
            old_dist_inputs=old,
            num_episodes=self._num_episodes,
        )
        params = module.actor_parameters()
        theta0 = parameters_to_vector(params).detach()
        constrained = math.isfinite(config.cost_limit)

        reward, cost, _ = policy_terms(module, params, data)
        g = _flat(torch.autograd.grad(reward, params, retain_graph=True))
        b_grad = _flat(torch.autograd.grad(cost, params)) if constrained else torch.zeros_like(g)
        fisher_data = data.subsample(config.fvp_subsample, generator=self._fvp_rng)
        fvp = fisher_vector_product(lambda: policy_terms(module, params, fisher_data)[2], params, config.damping)
        h_inv_g = conjugate_gradient(fvp, g, config.cg_iters)
        h_inv_b = conjugate_gradient(fvp, b_grad, config.cg_iters) if constrained else torch.zeros_like(g)
        c = self._episode_cost - (1.0 - config.cost_margin) * config.cost_limit if constrained else 0.0
        step = solve_cpo_step(g, b_grad, c, h_inv_g, h_inv_b, config.max_kl)

        def measure(flat: torch.Tensor) -> tuple[float, float, float]:
            with torch.no_grad():
                r, co, kl = policy_terms(module, _unflatten(flat, params), data)
            return float(r), float(co), float(kl)

        result = backtracking_line_search(
            theta0,
            step.x.to(theta0.dtype),
            measure,
            config.max_kl,
            c if constrained else -math.inf,
            decay=config.line_search_decay,
            max_steps=config.line_search_steps,
            baseline=(float(reward.detach()), float(cost.detach())),
        )
        with torch.no_grad():
            vector_to_parameters(result.params, params)
        self._log_step(step.case, step.lam, step.nu, c, result, module)

    def _fit_critics(self, module_id: str, rows: dict[str, Any], config: Any) -> torch.Tensor:
        """Per-step baselines in closed form, then ``critic_iters`` Adam passes over the MLPs."""
        module = self.module[module_id].unwrapped()
        obs = rows[Columns.OBS]
        module.vf.fit_step_baseline(obs, rows[Columns.VALUE_TARGETS])
        module.cost_vf.fit_step_baseline(obs, rows[keys.COST_VALUE_TARGETS])
        n = int(obs.shape[0])
        size = config.critic_minibatch_size or n
        columns = (Columns.OBS, Columns.VALUE_TARGETS, keys.COST_VALUE_TARGETS)
        loss = torch.zeros(())
        for _ in range(config.critic_iters):
            order = torch.randperm(n) if size < n else torch.arange(n)
            for start in range(0, n, size):
                mini = {k: rows[k][order[start : start + size]] for k in columns}
                loss = self.compute_loss_for_module(module_id=module_id, config=config, batch=mini, fwd_out=None)
                self.apply_gradients(self.compute_gradients({module_id: loss}))
        return loss.detach()

    def _log_step(self, case: CPOCase, lam: float, nu: float, c: float, result: Any, module: Any) -> None:
        values = {
            keys.CPO_CASE: int(case),
            keys.CPO_LAM: lam,
            keys.CPO_NU: nu,
            keys.CPO_C: c,
            keys.CPO_KL: result.kl,
            keys.CPO_STEP_FRACTION: result.step_fraction,
            keys.CPO_ACCEPTED: float(result.accepted),
            keys.REWARD_SURROGATE_GAIN: result.reward_improvement,
            keys.COST_SURROGATE_CHANGE: result.cost_change,
            keys.POLICY_STD: float(module.log_std.detach().exp().mean()),
        }
        for key, value in values.items():
            self.metrics.log_value((DEFAULT_MODULE_ID, key), value, window=1)


def _flat(grads: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def _unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, offset = [], 0
    for p in like:
        out.append(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return out


def real_rows(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The columns the update reads, without RLlib's artificial bootstrap rows (loss mask False):
    whole episodes in time order, each ending on a terminated row, as in a columnar batch."""
    names = (Columns.OBS, Columns.ACTIONS, Columns.REWARDS, keys.COSTS, keys.COST_DISCOUNT, Columns.TERMINATEDS)
    mask = batch[Columns.LOSS_MASK].bool() if Columns.LOSS_MASK in batch else None
    return {k: batch[k] if mask is None or bool(mask.all()) else batch[k][mask] for k in names}


def _np(x: torch.Tensor) -> Any:
    return x.detach().cpu().numpy().astype("float32")

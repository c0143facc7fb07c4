"""``FCPOTorchLearner``: one CPO step for the actor, then critic regression.

The learner orchestrates; the math lives in ``fcpo.cpo`` (CG, damped Fisher products, the CPO
sub-problem, the line search) and ``fcpo.surrogates`` (surrogates and KL as pure functions of the
actor's parameters). ``_update`` replaces RLlib's optimizer step:

1. g = grad of the reward surrogate, b = grad of the cost surrogate (``torch.autograd.grad``);
2. H^-1 g, H^-1 b by conjugate gradient on damped Fisher-vector products (double backward of KL);
3. ``solve_cpo_step`` with c = J_C - d (J_C arrives in ``timesteps``: the batch's mean discounted
   episode cost), then a backtracking line search that measures, at exactly the parameters it
   would apply, KL <= delta and the cost surrogate (and reward improvement unless recovering);
4. write the accepted parameters in place; fit both critics with their registered Adam.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from ray.rllib.connectors.learner import AddOneTsToEpisodesAndTruncate, GeneralAdvantageEstimation
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from fairrec_ray.fcpo import keys
from fairrec_ray.fcpo.connectors import AddCostsFromInfos, CostAdvantageEstimation
from fairrec_ray.fcpo.cpo import (
    CPOCase,
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    gae,
    solve_cpo_step,
)
from fairrec_ray.fcpo.surrogates import PolicyBatch, policy_terms


class FCPOTorchLearner(TorchLearner):
    def build(self) -> None:
        threads = getattr(self.config, "learner_torch_threads", 1)
        if threads:
            # Small MLPs on ~10k rows: one thread is fastest, and on a shared/loaded machine two
            # threads were measured 30x slower (20 critic steps: 19 s vs 0.6 s).
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
            self._learner_connector.append(
                GeneralAdvantageEstimation(gamma=self.config.gamma_r, lambda_=self.config.gae_lambda)
            )
            self._learner_connector.append(
                CostAdvantageEstimation(gamma=self.config.gamma_c, lambda_=self.config.gae_lambda)
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
        mask = batch[Columns.LOSS_MASK]
        v = module.compute_values(batch)[mask]
        vc = module.compute_cost_values(batch)[mask]
        loss_r = torch.mean((v - batch[Postprocessing.VALUE_TARGETS][mask]) ** 2)
        loss_c = torch.mean((vc - batch[keys.COST_VALUE_TARGETS][mask]) ** 2)
        return 0.5 * (loss_r + loss_c)

    def _update(self, batch: dict[str, Any], **kwargs: Any) -> tuple[Any, Any, Any]:
        module_id = DEFAULT_MODULE_ID
        module = self.module[module_id].unwrapped()
        config = self.config.get_config_for_module(module_id)
        module_batch = batch[module_id]
        # Critics first, then advantages from the fitted critics, then the CPO step: with the
        # connectors' advantages (old critics) the first iterations' cost advantages were
        # time-structure noise (std 21 vs a per-step cost std of 0.9), and the CPO step fitted it.
        if Postprocessing.VALUE_TARGETS not in module_batch:  # a ready batch (fast rollouts): no connectors ran
            self._recompute_advantages(module, module_batch, config)
        loss = self._fit_critics(module_id, module_batch, config)
        self._recompute_advantages(module, module_batch, config)
        self._cpo_step(module, module_batch, config)
        return {}, {module_id: loss}, {}

    def _recompute_advantages(self, module: Any, b: dict[str, Any], config: Any) -> None:
        """GAE for reward (standardised over real rows) and cost (centred only) with the critics
        just fitted; same maths as the GAE connectors."""
        real = b[Columns.LOSS_MASK].bool()
        with torch.no_grad():
            values = module.compute_values(b)
            cost_values = module.compute_cost_values(b)
        terminateds, truncateds = _np(b[Columns.TERMINATEDS]), _np(b[Columns.TRUNCATEDS])
        dense = _dense_episodes(terminateds, truncateds, _np(b[Columns.LOSS_MASK]), config.horizon)
        for column, target_column, signal, v, gamma, scale in (
            (Postprocessing.ADVANTAGES, Postprocessing.VALUE_TARGETS, Columns.REWARDS, values, config.gamma_r, True),
            (keys.COST_ADVANTAGES, keys.COST_VALUE_TARGETS, keys.COSTS, cost_values, config.gamma_c, False),
        ):
            v_np = _np(v)
            if dense:  # [users, T] table: GAE vectorised over users (same maths, no per-row loop)
                shape = (-1, config.horizon)
                _, returns = gae(_np(b[signal]).reshape(shape), v_np.reshape(shape), terminateds.reshape(shape),
                                 gamma, config.gae_lambda)  # fmt: skip
                targets = returns.reshape(-1).astype(np.float32)
            else:
                targets = compute_value_targets(
                    values=v_np, rewards=_np(b[signal]), terminateds=terminateds, truncateds=truncateds,
                    gamma=gamma, lambda_=config.gae_lambda,
                )  # fmt: skip
            adv = torch.from_numpy((targets - v_np).astype("float32")).to(v.device)
            adv = adv - adv[real].mean()
            if scale:
                adv = adv / (adv[real].std() + 1e-8)
            b[column] = adv
            b[target_column] = torch.from_numpy(targets.astype("float32")).to(v.device)

    def _cpo_step(self, module: Any, b: dict[str, Any], config: Any) -> None:
        mask = b[Columns.LOSS_MASK]
        with torch.no_grad():
            old = module.dist_inputs(b[Columns.OBS][mask])
        data = PolicyBatch(
            obs=b[Columns.OBS][mask],
            actions=b[Columns.ACTIONS][mask],
            reward_adv=b[Postprocessing.ADVANTAGES][mask],
            cost_adv=b[keys.COST_ADVANTAGES][mask],
            cost_weight=b[keys.COST_DISCOUNT][mask],
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
        c = self._episode_cost - config.cost_limit if constrained else 0.0
        step = solve_cpo_step(g, b_grad, c, h_inv_g, h_inv_b, config.max_kl)

        def evaluate(flat: torch.Tensor) -> tuple[float, float, float]:
            with torch.no_grad():
                r, co, kl = policy_terms(module, _unflatten(flat, params), data)
            return float(r), float(co), float(kl)

        result = backtracking_line_search(
            theta0,
            step.x.to(theta0.dtype),
            evaluate,
            config.max_kl,
            c if constrained else -math.inf,
            decay=config.line_search_decay,
            max_steps=config.line_search_steps,
            recovery=step.case == CPOCase.INFEASIBLE_RECOVERY,
            baseline=(float(reward.detach()), float(cost.detach())),
        )
        with torch.no_grad():
            vector_to_parameters(result.params, params)
        self._log_step(step.case, step.lam, step.nu, c, result, module)

    def _fit_critics(self, module_id: str, b: dict[str, Any], config: Any) -> torch.Tensor:
        n = int(b[Columns.OBS].shape[0])
        size = config.critic_minibatch_size or n
        module = self.module[module_id].unwrapped()
        real = b[Columns.LOSS_MASK].bool()
        with torch.no_grad():  # closed-form per-step baselines: mean residual target at each t
            for critic, targets in ((module.vf, b[Postprocessing.VALUE_TARGETS]),
                                    (module.cost_vf, b[keys.COST_VALUE_TARGETS])):  # fmt: skip
                obs = b[Columns.OBS][real]
                residual = targets[real] - critic.mlp(obs).squeeze(-1)
                index = critic.step_index(obs)
                sums = torch.zeros_like(critic.table).index_add_(0, index, residual)
                counts = torch.zeros_like(critic.table).index_add_(0, index, torch.ones_like(residual))
                critic.table.copy_(torch.where(counts > 0, sums / counts.clamp(min=1), critic.table))
        loss = torch.zeros(())
        for _ in range(config.critic_iters):
            order = torch.randperm(n) if size < n else torch.arange(n)
            for start in range(0, n, size):
                idx = order[start : start + size]
                mini = {k: b[k][idx] for k in (Columns.OBS, Columns.LOSS_MASK, Postprocessing.VALUE_TARGETS,
                                                keys.COST_VALUE_TARGETS)}  # fmt: skip
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


def _dense_episodes(terminateds: Any, truncateds: Any, loss_mask: Any, horizon: int) -> bool:
    """True for a columnar batch: whole T-step episodes back to back, no padding rows."""
    n = len(terminateds)
    if n == 0 or n % horizon or not loss_mask.all() or truncateds.any():
        return False
    ends = terminateds.reshape(-1, horizon)
    return bool(ends[:, -1].all() and ends.sum() == n // horizon)


def _np(x: torch.Tensor) -> Any:
    return x.detach().cpu().numpy().astype("float32")

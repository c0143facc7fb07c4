"""Learner connectors for the cost signal: read costs from ``infos``, then cost GAE (centred only).

Pipeline order (see ``FCPOTorchLearner.build``)::

    AddOneTsToEpisodesAndTruncate -> AddCostsFromInfos -> ...RLlib defaults... ->
    GeneralAdvantageEstimation (reward: standardised) -> CostAdvantageEstimation (cost: centred)

``AddCostsFromInfos`` must sit right after ``AddOneTsToEpisodesAndTruncate`` so its per-episode
columns line up with the (elongated) episodes and are batched/tensorised by the default pieces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets

from fairrec_ray.fcpo.cpo import center
from fairrec_ray.fcpo.env import INFO_COST
from fairrec_ray.fcpo.keys import COST_ADVANTAGES, COST_DISCOUNT, COST_VALUE_TARGETS, COSTS


class AddCostsFromInfos(ConnectorV2):
    """Adds ``COSTS`` (cost of transition t, found in ``infos[t + 1]``) and ``COST_DISCOUNT``
    (``gamma_c ** t``) per row; both are 0 on the artificial bootstrap row."""

    def __init__(self, input_observation_space: Any = None, input_action_space: Any = None, *, gamma_c: float):
        super().__init__(input_observation_space, input_action_space)
        self.gamma_c = gamma_c

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any], **kwargs: Any) -> Any:
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            n = len(episode)  # includes the artificial timestep
            infos = episode.get_infos()  # n + 1 entries: reset info, then one per step
            costs = np.array([float(info.get(INFO_COST, 0.0)) for info in infos[1:]], dtype=np.float32)
            costs[-1] = 0.0
            discount = (self.gamma_c ** (episode.t_started + np.arange(n))).astype(np.float32)
            discount[-1] = 0.0
            self.add_n_batch_items(batch, COSTS, list(costs), n, episode)
            self.add_n_batch_items(batch, COST_DISCOUNT, list(discount), n, episode)
        return batch


class CostAdvantageEstimation(ConnectorV2):
    """GAE on costs with the cost critic. Advantages are only *centred*: scaling them would change
    the units of the cost surrogate, which must match ``c = J_C - d`` (a reference-code bug)."""

    def __init__(
        self, input_observation_space: Any = None, input_action_space: Any = None, *, gamma: float, lambda_: float
    ):
        super().__init__(input_observation_space, input_action_space)
        self.gamma, self.lambda_ = gamma, lambda_

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any], **kwargs: Any) -> Any:
        for module_id, module_batch in batch.items():
            module = rl_module[module_id]
            with torch.no_grad():
                values = module.compute_cost_values(module_batch)
            device = values.device

            values_np = values.cpu().numpy().astype(np.float32)
            targets = compute_value_targets(
                values=values_np,
                rewards=_numpy(module_batch, COSTS),
                terminateds=_numpy(module_batch, Columns.TERMINATEDS),
                truncateds=_numpy(module_batch, Columns.TRUNCATEDS),
                gamma=self.gamma,
                lambda_=self.lambda_,
            )
            advantages = targets - values_np
            # Centre over the real rows only (the artificial bootstrap rows are masked out).
            real = _numpy(module_batch, Columns.LOSS_MASK).astype(bool)
            advantages = advantages - advantages[real].mean() if real.any() else center(advantages)
            module_batch[COST_ADVANTAGES] = torch.from_numpy(advantages.astype(np.float32)).to(device)
            module_batch[COST_VALUE_TARGETS] = torch.from_numpy(targets.astype(np.float32)).to(device)
        return batch


def _numpy(batch: dict[str, Any], key: str) -> np.ndarray:
    return batch[key].detach().cpu().numpy().astype(np.float32)

"""Learner connector for RLlib's episode path: the cost signal, read from ``infos``.

Pipeline order (see ``FCPOTorchLearner.build``)::

    AddOneTsToEpisodesAndTruncate -> AddCostsFromInfos -> ...RLlib defaults...

``AddCostsFromInfos`` must sit right after ``AddOneTsToEpisodesAndTruncate`` so its per-episode
columns line up with the (elongated) episodes and are batched/tensorised by the default pieces.
Advantages are not computed here: the learner computes them (``fcpo.advantages``) after fitting
the critics, for this path and the columnar one alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2

from fairrec_ray.fcpo.env import INFO_COST
from fairrec_ray.fcpo.keys import COST_DISCOUNT, COSTS


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

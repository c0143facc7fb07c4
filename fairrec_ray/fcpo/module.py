"""FCPO RLModule: Gaussian actor over the scoring vector ``w`` plus reward and cost critics.

Action-distribution inputs are ``[mean, log_std]`` (RLlib's ``TorchDiagGaussian`` for a Box
action space), so the log-probability the learner uses is that of the sampled ``w`` itself.
``log_std`` is a free, state-independent parameter (as in TRPO/CPO). The critics (MLP 64-64 tanh)
exist only on the learner: EnvRunners build the module with ``inference_only=True``.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

COST_VF_PREDS = "cost_vf_preds"


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.Tanh()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class FCPOTorchRLModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """``model_config``: ``actor_hidden`` (default (64, 64)), ``critic_hidden`` ((64, 64)),
    ``init_log_std`` (-1.0)."""

    def setup(self) -> None:
        cfg = dict(self.model_config or {})
        obs_dim = int(self.observation_space.shape[0])
        act_dim = int(self.action_space.shape[0])
        self.pi = mlp(obs_dim, tuple(cfg.get("actor_hidden", (64, 64))), act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.get("init_log_std", -1.0))))
        if not self.inference_only:
            critic_hidden = tuple(cfg.get("critic_hidden", (64, 64)))
            self.vf = mlp(obs_dim, critic_hidden, 1)
            self.cost_vf = mlp(obs_dim, critic_hidden, 1)

    def get_non_inference_attributes(self) -> list[str]:
        return ["vf", "cost_vf"]

    def actor_parameters(self) -> list[nn.Parameter]:
        """The parameters the CPO step updates (critics are fitted separately)."""
        return [*self.pi.parameters(), self.log_std]

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.vf.parameters(), *self.cost_vf.parameters()]

    def dist_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self.pi(obs)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.dist_inputs(batch[Columns.OBS])}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """Reward critic V_R(s)."""
        return self.vf(batch[Columns.OBS]).squeeze(-1)

    def compute_cost_values(self, batch: dict[str, Any]) -> torch.Tensor:
        """Cost critic V_C(s)."""
        return self.cost_vf(batch[Columns.OBS]).squeeze(-1)

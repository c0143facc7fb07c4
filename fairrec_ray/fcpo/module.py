"""FCPO RLModule: Gaussian actor over the scoring vector ``w`` plus reward and cost critics.

Action-distribution inputs are ``[mean, log_std]`` (RLlib's ``TorchDiagGaussian`` for a Box
action space), so the log-probability the learner uses is that of the sampled ``w`` itself.
``log_std`` is a free, state-independent parameter (as in TRPO/CPO). The critics (MLP 64-64 tanh)
exist only on the learner: EnvRunners build the module with ``inference_only=True``.

Actor prior (``model_config["prior_query"]``, filled in by ``FCPOConfig`` from the env data): the
mean is ``A s + b + MLP(s)``, a *residual* policy. The linear part ``A`` is initialised to the MF
fold-in query of the state window, ``w0 = scale * (V^T V + reg I)^-1 * sum_j e_j`` (the ridge
solution for a user who consumed exactly the window's items, i.e. ALS's own user update), which
already ranks like MF (recall@10 ~0.13 on ML-100K vs 0.01 for a random w); the MLP's last layer
starts at zero. So RL starts from a good recommender and all of ``A``, ``b`` and the MLP are then
moved by the CPO step. Without a prior the mean is the plain MLP (as the reference).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from fairrec_ray.fcpo.settings import FCPOSettings

COST_VF_PREDS = "cost_vf_preds"
DEFAULT_INIT_LOG_STD = FCPOSettings().init_log_std


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.Tanh()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ResidualActor(nn.Module):
    """Mean of the Gaussian policy: ``prior(s) + mlp(s)``; ``prior`` is a linear layer or absent."""

    def __init__(
        self, obs_dim: int, hidden: tuple[int, ...], act_dim: int, prior_query: Any = None, exposure_offset: float = 0.0
    ) -> None:
        super().__init__()
        self.mlp = mlp(obs_dim, hidden, act_dim)
        self.prior: nn.Linear | None = None
        if prior_query is not None:
            query = torch.as_tensor(prior_query, dtype=torch.float32)  # [dim, dim]
            dim = query.shape[0]
            if query.shape != (dim, dim) or dim > act_dim or (obs_dim - 1) % dim:
                raise ValueError(f"prior_query: shape {tuple(query.shape)} does not fit obs {obs_dim} / act {act_dim}")
            n_window = (obs_dim - 1) // dim
            self.prior = nn.Linear(obs_dim, act_dim)
            with torch.no_grad():
                # obs = [e_1, ..., e_n, t/T]: the same query matrix on every window slot, 0 on t/T;
                # extra action coordinates (the exposure offset) start at ``exposure_offset``
                # (0 = plain MF ranking; fcpo.prior calibrates a feasible one).
                self.prior.weight.zero_()
                self.prior.weight[:dim].copy_(torch.cat([query] * n_window + [torch.zeros(dim, 1)], dim=1))
                self.prior.bias.zero_()
                self.prior.bias[dim:] = float(exposure_offset)
                last = self.mlp[-1]
                assert isinstance(last, nn.Linear)
                last.weight.zero_()
                last.bias.zero_()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.mlp(obs)
        return out if self.prior is None else out + self.prior(obs)


class TimeBaselineCritic(nn.Module):
    """``V(s) = table[t] + mlp(s)``: a per-step baseline (``t`` read from the state's ``t / T``)
    plus an MLP for the rest. Returns of a T-step episode are dominated by the steps left (values
    0..~90 on ML-100K); a tanh MLP alone did not learn that in tens of Adam steps (residual std =
    target std), which left the cost advantages pure time-structure noise. The learner sets
    ``table`` in closed form (``fit_step_baseline``) before the MLP's gradient steps."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], horizon: int) -> None:
        super().__init__()
        self.horizon = int(horizon)
        self.mlp = mlp(obs_dim, hidden, 1)
        self.table = nn.Parameter(torch.zeros(self.horizon + 1))

    def step_index(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.round(obs[:, -1] * self.horizon).long().clamp_(0, self.horizon)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mlp(obs).squeeze(-1) + self.table[self.step_index(obs)]

    @torch.no_grad()
    def fit_step_baseline(self, obs: torch.Tensor, targets: torch.Tensor) -> None:
        """Closed form for ``table``: at each step t, the mean of ``targets - mlp(obs)`` over the
        rows at t (least squares in ``table`` with the MLP fixed); steps without rows keep theirs."""
        residual = targets - self.mlp(obs).squeeze(-1)
        index = self.step_index(obs)
        sums = torch.zeros_like(self.table).index_add_(0, index, residual)
        counts = torch.zeros_like(self.table).index_add_(0, index, torch.ones_like(residual))
        self.table.copy_(torch.where(counts > 0, sums / counts.clamp(min=1), self.table))


class FCPOTorchRLModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """``model_config``: ``actor_hidden`` (default (64, 64)), ``critic_hidden`` ((64, 64)),
    ``init_log_std`` (``FCPOSettings``' default), ``horizon`` (T, for the critics' per-step baseline),
    ``prior_query`` ([dim, dim] or None: see the module docstring), ``prior_exposure_offset``
    (start of the exposure coordinate, 0 = MF ranking; ``fcpo.prior``)."""

    def setup(self) -> None:
        cfg = dict(self.model_config or {})
        obs_dim = int(self.observation_space.shape[0])
        act_dim = int(self.action_space.shape[0])
        hidden = tuple(cfg.get("actor_hidden", (64, 64)))
        self.pi = ResidualActor(
            obs_dim, hidden, act_dim, cfg.get("prior_query"), float(cfg.get("prior_exposure_offset", 0.0))
        )
        self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.get("init_log_std", DEFAULT_INIT_LOG_STD))))
        if not self.inference_only:
            critic_hidden = tuple(cfg.get("critic_hidden", (64, 64)))
            horizon = int(cfg.get("horizon", 10))
            self.vf = TimeBaselineCritic(obs_dim, critic_hidden, horizon)
            self.cost_vf = TimeBaselineCritic(obs_dim, critic_hidden, horizon)
        self.float()  # observations are float32, whatever torch's default dtype is

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
        return self.vf(batch[Columns.OBS])

    def compute_cost_values(self, batch: dict[str, Any]) -> torch.Tensor:
        """Cost critic V_C(s)."""
        return self.cost_vf(batch[Columns.OBS])

"""Prompt Mixture (UP5): one trained CFP prompt per attribute, combined for any subset of attributes.

Per prefix token, a small attention layer weighs the subset's prompts,
``w_k = softmax_{k in S}(v . tanh(W x_k))`` and ``mixed = sum_k w_k x_k``, on both sides:

the attribute prompts' FFN (+ reweighter) outputs are mixed by a ``MixturePrefix`` per side and
injected by the same machinery as a single prompt.

Only the two mixers train (the attribute prompts and the backbone stay frozen), adversarially
against one discriminator per attribute of the sampled subset (``mixture_train``). ``v`` starts at
zero, so an untrained mixer averages the subset's prompts; a one-attribute subset reproduces that
attribute's prompt exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from fairrec_ray.cfp.model import CFPModel, load_prompts
from fairrec_ray.cfp.prefix import PrefixPrompt, PrefixSource
from fairrec_ray.errors import ConfigError

MIXER_WEIGHTS = "mixture.safetensors"


class PromptMixer(nn.Module):
    """Attention over K prompts per prefix token, restricted to a subset of them."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)
        nn.init.zeros_(self.score.weight)  # start as the plain average of the subset

    def forward(self, prompts: torch.Tensor, subset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``prompts`` [K, P, D], ``subset`` [K] bool -> (mixed [P, D], weights [P, K])."""
        if not bool(subset.any()):
            raise ConfigError("prompt mixture: the attribute subset is empty")
        scores = self.score(torch.tanh(self.proj(prompts))).squeeze(-1).transpose(0, 1)  # [P, K]
        weights = torch.softmax(scores.masked_fill(~subset, float("-inf")), dim=-1)
        return torch.einsum("pk,kpd->pd", weights, prompts), weights


class MixturePrefix(PrefixSource):
    """One side's prefix = mixture of frozen per-attribute ``PrefixPrompt`` outputs."""

    def __init__(self, prompts: Sequence[PrefixPrompt], hidden: int = 64) -> None:
        if len({p.config for p in prompts}) != 1:
            raise ConfigError("prompt mixture: the attribute prompts differ in shape (prefix length, layers, ...)")
        super().__init__(prompts[0].config)
        self.prompts = nn.ModuleList(prompts).requires_grad_(False)
        self.mixer = PromptMixer(self.config.width, hidden)
        self.register_buffer("subset", torch.ones(len(prompts), dtype=torch.bool), persistent=False)

    def flat(self) -> torch.Tensor:
        stacked = torch.cat([p.flat() for p in self.prompts], dim=0)  # [K, P, width]
        return self.mixer(stacked, self.subset)[0].unsqueeze(0)


class MixtureModel(CFPModel):
    """A frozen backbone with the Prompt Mixture of several attribute prompts on both sides."""

    encoder_prefix: MixturePrefix
    decoder_prefix: MixturePrefix

    def __init__(self, backbone: nn.Module, encoder: MixturePrefix, decoder: MixturePrefix, attributes: Sequence[str]):
        super().__init__(backbone, encoder, decoder)
        self.attributes = list(attributes)

    @property
    def mixers(self) -> list[PromptMixer]:
        return [self.encoder_prefix.mixer, self.decoder_prefix.mixer]

    def set_subset(self, attributes: Sequence[str]) -> None:
        unknown = sorted(set(attributes) - set(self.attributes))
        if unknown or not attributes:
            raise ConfigError(
                f"prompt mixture: subset {list(attributes)}; expected a non-empty subset of {self.attributes}"
            )
        mask = torch.tensor([a in attributes for a in self.attributes])
        self.encoder_prefix.subset.copy_(mask)
        self.decoder_prefix.subset.copy_(mask)

    def mixer_state(self) -> dict[str, torch.Tensor]:
        return {f"{side}.{k}": v.detach().cpu().contiguous() for side, m in zip(("encoder", "decoder"), self.mixers)
                for k, v in m.state_dict().items()}  # fmt: skip

    def load_mixer_state(self, state: dict[str, torch.Tensor]) -> None:
        for side, mixer in zip(("encoder", "decoder"), self.mixers):
            mixer.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(side + ".")})

    def save_mixers(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.mixer_state(), str(directory / MIXER_WEIGHTS))
        return directory


def build_mixture_model(backbone: nn.Module, prompt_dirs: dict[str, str | Path], hidden: int = 64) -> MixtureModel:
    """Load every attribute's saved CFP prompt onto ``backbone`` and put fresh mixers over them."""
    if len(prompt_dirs) < 2:
        raise ConfigError(f"prompt mixture: needs >= 2 attribute prompts, got {list(prompt_dirs)}")
    names = list(prompt_dirs)
    loaded = {}
    for name in names:
        try:
            loaded[name] = load_prompts(prompt_dirs[name])
        except ConfigError as exc:
            raise ConfigError(f"prompts.{name}: {exc}") from None
    encoder = MixturePrefix([loaded[n][0] for n in names], hidden)
    decoder = MixturePrefix([loaded[n][1] for n in names], hidden)
    model = MixtureModel(backbone, encoder, decoder, names)
    model.requires_grad_(False)
    for mixer in model.mixers:
        mixer.requires_grad_(True)
    return model

"""Prompt Mixture (UP5): one trained CFP prompt per attribute, combined for any subset of attributes.

Per prefix token, a small attention layer weighs the subset's prompts,
``w_k = softmax_{k in S}(v . tanh(W x_k))`` and ``mixed = sum_k w_k x_k``, on both sides:

* encoder: the attribute prompts' FFN (+ reweighter) outputs, mixed and injected by the same hooks
  as a single prompt (``MixtureEncoderPrefix``);
* decoder: the attribute adapters' saved PEFT prefixes, mixed by a module that stands in for the
  active adapter's prompt encoder (``DecoderPromptMixture``).

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

from fairrec_ray.cfp.model import CFPModel
from fairrec_ray.cfp.prefix import EncoderPrefix, EncoderPrefixInjector
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


class MixtureEncoderPrefix(EncoderPrefixInjector):
    """Encoder prefix = mixture of frozen per-attribute ``EncoderPrefix`` outputs."""

    def __init__(self, prefixes: Sequence[EncoderPrefix], hidden: int = 64) -> None:
        configs = {p.config for p in prefixes}
        if len(configs) != 1:
            raise ConfigError("prompt mixture: the attribute prompts differ in shape (prefix length, layers, ...)")
        super().__init__(prefixes[0].config)
        self.prompts = nn.ModuleList(prefixes).requires_grad_(False)
        self.mixer = PromptMixer(2 * self.config.num_layers * self.config.inner_dim, hidden)
        self.register_buffer("subset", torch.ones(len(prefixes), dtype=torch.bool), persistent=False)

    def flat(self) -> torch.Tensor:
        stacked = torch.cat([p.flat() for p in self.prompts], dim=0)  # [K, P, dim]
        return self.mixer(stacked, self.subset)[0].unsqueeze(0)


class DecoderPromptMixture(nn.Module):
    """Stands in for PEFT's prompt encoder of the active adapter: returns the mixture of the
    attribute adapters' (saved, baked) decoder prefixes, one row per batch element."""

    def __init__(self, baked: Sequence[torch.Tensor], embedding: nn.Embedding, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("prompts", torch.stack([b.detach() for b in baked]), persistent=False)  # [K, P, dim]
        self.embedding = embedding.requires_grad_(False)  # PEFT reads its device
        self.mixer = PromptMixer(self.prompts.shape[-1], hidden)
        self.register_buffer("subset", torch.ones(len(baked), dtype=torch.bool), persistent=False)

    def forward(self, prompt_tokens: torch.Tensor) -> torch.Tensor:
        mixed, _ = self.mixer(self.prompts, self.subset)
        return mixed.unsqueeze(0).expand(prompt_tokens.shape[0], -1, -1)


class MixtureModel(CFPModel):
    """A frozen backbone with the Prompt Mixture of several attribute prompts on both sides."""

    def __init__(self, peft_model: nn.Module, encoder: MixtureEncoderPrefix, attributes: Sequence[str]) -> None:
        super().__init__(peft_model, encoder)
        self.attributes = list(attributes)

    @property
    def mixers(self) -> list[PromptMixer]:
        return [self.encoder_prefix.mixer, self.peft.prompt_encoder[self.peft.active_adapter].mixer]

    def set_subset(self, attributes: Sequence[str]) -> None:
        unknown = sorted(set(attributes) - set(self.attributes))
        if unknown or not attributes:
            raise ConfigError(
                f"prompt mixture: subset {list(attributes)}; expected a non-empty subset of {self.attributes}"
            )
        mask = torch.tensor([a in attributes for a in self.attributes])
        self.encoder_prefix.subset.copy_(mask)
        self.peft.prompt_encoder[self.peft.active_adapter].subset.copy_(mask)

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
    from peft import PeftModel

    if len(prompt_dirs) < 2:
        raise ConfigError(f"prompt mixture: needs >= 2 attribute prompts, got {list(prompt_dirs)}")
    names = list(prompt_dirs)
    for name, folder in prompt_dirs.items():
        for file in ("adapter_config.json", "encoder_prefix_config.json"):
            if not (Path(folder) / file).is_file():
                raise ConfigError(f"prompts.{name}: {folder} is not a CFP prompt folder ({file} missing)")
    peft_model = PeftModel.from_pretrained(backbone, str(prompt_dirs[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        peft_model.load_adapter(str(prompt_dirs[name]), adapter_name=name)
    baked = [peft_model.prompt_encoder[n].embedding.weight for n in names]
    active = names[0]
    mixture = DecoderPromptMixture(baked, peft_model.prompt_encoder[active].embedding, hidden)
    peft_model.prompt_encoder[active] = mixture
    peft_model.peft_config[active].inference_mode = False  # so PEFT calls the prompt encoder
    peft_model.requires_grad_(False)
    encoder = MixtureEncoderPrefix([EncoderPrefix.load(prompt_dirs[n]) for n in names], hidden)
    model = MixtureModel(peft_model, encoder, names)
    for mixer in model.mixers:
        mixer.requires_grad_(True)
    return model

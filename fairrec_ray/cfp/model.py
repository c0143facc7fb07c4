"""CFPModel: a frozen P5 backbone with trainable encoder + decoder prefix prompts.

Both sides are ``prefix.PrefixPrompt`` (PEFT's prefix FFN + the Prompt Token Reweighter), injected
by ``prefix.PrefixInjector`` through transformers' attention interface (``attention.py``), so the
prefixes act in ``forward``, ``get_encoder()`` and ``generate()`` alike.

Saved prompt folder (``save_prompt``)::

    encoder_prefix_config.json, encoder_prefix.safetensors   encoder prefix (FFN + reweighter)
    decoder_prefix_config.json, decoder_prefix.safetensors   decoder prefix (FFN + reweighter)
    cfp_prompt.json                                          what it was trained for (attribute, ...)

``load_fair_model(backbone_dir, prompt_dir)`` restores both onto the backbone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fairrec_ray.cfp import attention
from fairrec_ray.cfp.config import PromptConfig
from fairrec_ray.cfp.prefix import SIDES, PrefixInjector, PrefixPrompt, PrefixSource, prefix_config_for
from fairrec_ray.errors import ConfigError

PROMPT_META = "cfp_prompt.json"


def user_mean(hidden: torch.Tensor, user_token_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, L, D] over the True positions of ``user_token_mask`` [B, L] -> [B, D]."""
    mask = user_token_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class CFPModel(nn.Module):
    """Backbone (frozen) + prompts. ``forward`` returns (recommendation loss, user representation)."""

    def __init__(self, backbone: nn.Module, encoder_prefix: PrefixSource, decoder_prefix: PrefixSource) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.encoder_prefix = encoder_prefix
        self.decoder_prefix = decoder_prefix
        attention.install(backbone)
        self.injectors = (
            PrefixInjector(encoder_prefix).attach(backbone.get_encoder()),
            PrefixInjector(decoder_prefix).attach(backbone.get_decoder()),
        )

    def prompt_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Run as the bare backbone (the unfair baseline) inside this block."""
        with self.injectors[0].disabled(), self.injectors[1].disabled():
            yield

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        user_token_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, labels=labels, return_dict=True)
        return out.loss, user_mean(out.encoder_last_hidden_state, user_token_mask)

    def encode_users(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, user_token_mask: torch.Tensor
    ) -> torch.Tensor:
        """User representation with the encoder prefix active (the encoder alone: the decoder
        prefix cannot influence encoder states)."""
        hidden = self.backbone.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return user_mean(hidden, user_token_mask)

    def generate(self, **kwargs: Any) -> torch.Tensor:
        return self.backbone.generate(**kwargs)

    def save_prompt(self, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
        directory = Path(directory)
        for side, prompt in zip(SIDES, (self.encoder_prefix, self.decoder_prefix)):
            if not isinstance(prompt, PrefixPrompt):
                raise TypeError(f"save_prompt: the {side} prefix is a {type(prompt).__name__}, not a PrefixPrompt")
            prompt.save(directory, side)
        (directory / PROMPT_META).write_text(json.dumps(meta or {}, indent=2, default=str) + "\n")
        return directory


def new_prompts(backbone: nn.Module, prompt: PromptConfig) -> tuple[PrefixPrompt, PrefixPrompt]:
    """Fresh (encoder, decoder) prompts shaped for ``backbone``."""
    if prompt.prefix_length < 1:
        raise ConfigError(f"prefix_length: got {prompt.prefix_length}; expected >= 1")
    shape = dict(
        num_virtual_tokens=prompt.prefix_length,
        ffn_hidden=prompt.ffn_hidden,
        reweighter=prompt.reweighter,
        reweighter_dim=prompt.reweighter_dim,
    )
    encoder, decoder = (PrefixPrompt(prefix_config_for(backbone.config, side, **shape)) for side in SIDES)
    return encoder, decoder


def build_cfp_model(backbone: nn.Module, prompt: PromptConfig) -> CFPModel:
    """Wrap ``backbone`` (a T5ForConditionalGeneration, e.g. P5Model) with fresh prompts; the
    backbone's own parameters are frozen."""
    return CFPModel(backbone, *new_prompts(backbone, prompt))


def load_prompts(prompt_dir: str | Path) -> tuple[PrefixPrompt, PrefixPrompt]:
    return PrefixPrompt.load(prompt_dir, "encoder"), PrefixPrompt.load(prompt_dir, "decoder")


def attach_prompt(backbone: nn.Module, prompt_dir: str | Path) -> CFPModel:
    """Put a saved prompt (both sides) onto ``backbone``; everything frozen, eval mode."""
    model = CFPModel(backbone, *load_prompts(prompt_dir))
    model.requires_grad_(False)
    return model.eval()


def load_fair_model(backbone_dir: str | Path, prompt_dir: str | Path) -> tuple[CFPModel, Any]:
    """Restore the fair model: ``load_p5(backbone_dir)`` + the saved prompt. Returns (model, tokenizer)."""
    from fairrec_ray.p5 import load_p5

    backbone, tokenizer = load_p5(backbone_dir)
    return attach_prompt(backbone, prompt_dir), tokenizer

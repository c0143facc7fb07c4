"""CFPModel: a frozen P5 backbone with trainable encoder + decoder prefix prompts.

Decoder prefix = PEFT ``PrefixTuningConfig`` (prefix_projection=True: PEFT's MLP is the paper's FFN);
encoder prefix = ``EncoderPrefix`` (same FFN class, our key/value injection; see ``prefix.py``).
A Prompt Token Reweighter sits on each FFN's output (``reweighter=False`` for the ablation).

Saved prompt folder (``save_prompt``)::

    adapter_config.json, adapter_model.safetensors   PEFT decoder prefix (reweighting baked in);
                                                      PeftModel.from_pretrained(backbone, folder)
    encoder_prefix_config.json, encoder_prefix.safetensors   our encoder prefix (FFN + reweighter)
    cfp_prompt.json                                   what it was trained for (attribute, ...)

``load_fair_model(backbone_dir, prompt_dir)`` restores both onto the backbone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, PrefixTuningConfig, TaskType, get_peft_model
from torch import nn

from fairrec_ray.cfp.prefix import EncoderPrefix, encoder_prefix_config_for, make_reweighter_hook
from fairrec_ray.cfp.reweighter import PromptTokenReweighter
from fairrec_ray.errors import ConfigError

PROMPT_META = "cfp_prompt.json"


@dataclass(frozen=True)
class PromptConfig:
    """Prefix prompt hyper-parameters shared by the encoder and decoder sides."""

    prefix_length: int = 10
    ffn_hidden: int = 128
    reweighter: bool = True
    reweighter_dim: int = 64


def user_mean(hidden: torch.Tensor, user_token_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, L, D] over the True positions of ``user_token_mask`` [B, L] -> [B, D]."""
    mask = user_token_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class CFPModel(nn.Module):
    """Backbone (frozen) + prompts. ``forward`` returns (recommendation loss, user representation)."""

    def __init__(
        self,
        peft_model: PeftModel,
        encoder_prefix: EncoderPrefix,
        decoder_reweighter: PromptTokenReweighter | None = None,
    ) -> None:
        super().__init__()
        self.peft = peft_model
        self.encoder_prefix = encoder_prefix.attach(self.backbone.get_encoder())
        self.decoder_reweighter = decoder_reweighter
        if decoder_reweighter is not None:
            peft_model.prompt_encoder[peft_model.active_adapter].register_forward_hook(
                make_reweighter_hook(decoder_reweighter)
            )

    @property
    def backbone(self) -> nn.Module:
        return self.peft.get_base_model()

    def prompt_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return self.backbone.state_dict()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        user_token_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.peft(input_ids=input_ids, attention_mask=attention_mask, labels=labels, return_dict=True)
        return out.loss, user_mean(out.encoder_last_hidden_state, user_token_mask)

    def encode_users(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, user_token_mask: torch.Tensor
    ) -> torch.Tensor:
        """User representation with the encoder prefix active (the encoder alone: the decoder
        prefix cannot influence encoder states)."""
        hidden = self.backbone.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return user_mean(hidden, user_token_mask)

    def generate(self, **kwargs: Any) -> torch.Tensor:
        return self.peft.generate(**kwargs)

    def save_prompt(self, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
        directory = Path(directory)
        self.peft.save_pretrained(str(directory))
        self.encoder_prefix.save(directory)
        (directory / PROMPT_META).write_text(json.dumps(meta or {}, indent=2, default=str) + "\n")
        return directory


def build_cfp_model(backbone: nn.Module, prompt: PromptConfig) -> CFPModel:
    """Wrap ``backbone`` (a T5ForConditionalGeneration, e.g. P5Model) with fresh prompts; the
    backbone's own parameters are frozen (PEFT does it; we re-check)."""
    if prompt.prefix_length < 1:
        raise ConfigError(f"prefix_length: got {prompt.prefix_length}; expected >= 1")
    cfg = backbone.config
    inner = cfg.num_heads * cfg.d_kv
    peft_config = PrefixTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=prompt.prefix_length,
        num_layers=cfg.num_decoder_layers,  # PEFT would read num_hidden_layers = the encoder's depth
        token_dim=inner,  # T5 allows heads * d_kv != d_model; the cache holds inner-dim keys
        num_attention_heads=cfg.num_heads,
        encoder_hidden_size=prompt.ffn_hidden,
        prefix_projection=True,
    )
    peft_model = get_peft_model(backbone, peft_config)
    for p in peft_model.get_base_model().parameters():
        p.requires_grad_(False)
    encoder_prefix = EncoderPrefix(
        encoder_prefix_config_for(
            cfg,
            num_virtual_tokens=prompt.prefix_length,
            ffn_hidden=prompt.ffn_hidden,
            reweighter=prompt.reweighter,
            reweighter_dim=prompt.reweighter_dim,
        )
    )
    decoder_dim = 2 * cfg.num_decoder_layers * inner
    reweighter = PromptTokenReweighter(decoder_dim, prompt.reweighter_dim) if prompt.reweighter else None
    return CFPModel(peft_model, encoder_prefix, reweighter)


def attach_prompt(backbone: nn.Module, prompt_dir: str | Path) -> CFPModel:
    """Put a saved prompt onto ``backbone``: PEFT adapter (decoder) + our encoder prefix."""
    prompt_dir = Path(prompt_dir)
    for name in ("adapter_config.json", "encoder_prefix_config.json"):
        if not (prompt_dir / name).is_file():
            raise ConfigError(f"{prompt_dir}: not a CFP prompt folder ({name} missing)")
    peft_model = PeftModel.from_pretrained(backbone, str(prompt_dir))
    model = CFPModel(peft_model, EncoderPrefix.load(prompt_dir))
    model.requires_grad_(False)
    return model.eval()


def load_fair_model(backbone_dir: str | Path, prompt_dir: str | Path) -> tuple[CFPModel, Any]:
    """Restore the fair model: ``load_p5(backbone_dir)`` + the saved prompt. Returns (model, tokenizer)."""
    from fairrec_ray.p5 import load_p5

    backbone, tokenizer = load_p5(backbone_dir)
    return attach_prompt(backbone, prompt_dir), tokenizer

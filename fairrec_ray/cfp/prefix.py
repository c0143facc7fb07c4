"""Prefix prompts for a frozen T5/P5: PEFT's prefix tuning for the decoder, our own for the encoder.

Why two mechanisms (design.md, "checked pitfall"): PEFT's ``PrefixTuningConfig`` on a seq2seq T5
feeds its prefix through ``past_key_values``, which only the decoder reads; the encoder states, which
the user representation and the discriminator read, stay bit-identical to the backbone's.

Encoder prefix = key/value prefixes in every encoder self-attention layer (what the UP5 code did with
a privately modified transformers), built here from public APIs only:

* a forward pre-hook on the encoder stack computes the prefix (FFN + reweighter) once per encoder
  call and wraps it in a ``transformers.DynamicCache`` holding P key/value vectors per layer;
* a forward pre-hook (``with_kwargs``) on each encoder ``T5Attention`` passes that cache as
  ``past_key_values`` and left-pads the attention mask by P columns.

``T5Attention`` then concatenates the cached prefix keys/values before the real ones and computes
its relative position bias with ``past_seen_tokens = P``, so the relative positions *between real
tokens* are exactly the backbone's. The encoder's output length is unchanged: the decoder's
cross-attention, ``user_token_mask`` and ``generate`` need no change. Because the prefix is computed
inside the encoder call, it is active in ``model(...)``, ``generate(...)`` and ``get_encoder()(...)``.

The reparameterisation FFN is PEFT's own ``PrefixEncoder`` (``prefix_projection=True``: embedding ->
Linear -> tanh -> Linear to ``2 · layers · inner_dim`` per token) on both sides, with the Prompt Token
Reweighter on its output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PrefixTuningConfig, TaskType
from peft.tuners.prefix_tuning import PrefixEncoder
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DynamicCache

from fairrec_ray.cfp.reweighter import PromptTokenReweighter

ENCODER_PREFIX_CONFIG = "encoder_prefix_config.json"
ENCODER_PREFIX_WEIGHTS = "encoder_prefix.safetensors"


@dataclass(frozen=True)
class EncoderPrefixConfig:
    """Shape of the encoder prefix; saved as ``encoder_prefix_config.json`` beside the weights."""

    num_virtual_tokens: int
    num_layers: int
    num_heads: int
    head_dim: int
    ffn_hidden: int
    reweighter: bool = True
    reweighter_dim: int = 64

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim

    def peft_config(self) -> PrefixTuningConfig:
        """The FFN's shape in PEFT's terms (only used to build PEFT's ``PrefixEncoder``)."""
        return PrefixTuningConfig(
            task_type=TaskType.SEQ_2_SEQ_LM,
            num_virtual_tokens=self.num_virtual_tokens,
            num_layers=self.num_layers,
            token_dim=self.inner_dim,
            num_attention_heads=self.num_heads,
            encoder_hidden_size=self.ffn_hidden,
            prefix_projection=True,
        )


def encoder_prefix_config_for(backbone_config: Any, **prompt: Any) -> EncoderPrefixConfig:
    """Encoder-prefix shape for a T5 config (``num_layers`` is the encoder's depth)."""
    return EncoderPrefixConfig(
        num_layers=backbone_config.num_layers,
        num_heads=backbone_config.num_heads,
        head_dim=backbone_config.d_kv,
        **prompt,
    )


def make_reweighter_hook(reweighter: PromptTokenReweighter):
    """Forward hook that applies ``reweighter`` to a PEFT ``PrefixEncoder``'s output.

    A hook (not a replaced submodule) keeps PEFT's state-dict layout; PEFT's ``save_pretrained``
    calls the prompt encoder to bake the prefix, so the saved adapter includes the reweighting."""

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return reweighter(output)

    return hook


class EncoderPrefixInjector(nn.Module):
    """Hook machinery that injects ``self.flat()`` ([1, P, 2 * layers * inner]) as key/value
    prefixes into a T5 encoder; subclasses say where the prefix comes from."""

    def __init__(self, config: EncoderPrefixConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("tokens", torch.arange(config.num_virtual_tokens)[None], persistent=False)
        self.enabled = True
        self._cache: DynamicCache | None = None
        self._handles: list[Any] = []

    def flat(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        """The prefix as [layers, 2 (key/value), heads, P, head_dim]."""
        c = self.config
        out = self.flat().view(c.num_virtual_tokens, c.num_layers, 2, c.num_heads, c.head_dim)
        return out.permute(1, 2, 3, 0, 4)

    # --- hooks --------------------------------------------------------------------------------
    def attach(self, encoder: nn.Module) -> EncoderPrefixInjector:
        """Install the hooks on a T5 encoder stack (``model.get_encoder()``); idempotent per model."""
        self.detach()
        blocks = list(encoder.block)
        if len(blocks) != self.config.num_layers:
            raise ValueError(f"encoder has {len(blocks)} layers; the prefix was built for {self.config.num_layers}")
        self._handles.append(encoder.register_forward_pre_hook(self._start, with_kwargs=True))
        self._handles.append(encoder.register_forward_hook(self._finish))
        for block in blocks:
            attention = block.layer[0].SelfAttention
            self._handles.append(attention.register_forward_pre_hook(self._inject, with_kwargs=True))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the encoder as the bare backbone (the unfair baseline) inside this block."""
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous

    def _start(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not self.enabled:
            self._cache = None
            return
        inputs = kwargs.get("input_ids")
        if inputs is None:
            inputs = kwargs.get("inputs_embeds")
        if inputs is None:
            inputs = args[0]
        batch = inputs.shape[0]
        dtype = next(module.parameters()).dtype
        prefix = self().to(dtype)
        layers = [(kv[0].expand(batch, -1, -1, -1), kv[1].expand(batch, -1, -1, -1)) for kv in prefix]
        self._cache = DynamicCache(layers)

    def _finish(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._cache = None

    def _inject(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self._cache is None:
            return None
        kwargs["past_key_values"] = self._cache
        mask = kwargs.get("mask")
        if mask is not None:  # None = attend everywhere, which already covers the prefix
            pad = torch.ones if mask.dtype == torch.bool else torch.zeros
            prefix_cols = pad(*mask.shape[:-1], self.config.num_virtual_tokens, dtype=mask.dtype, device=mask.device)
            kwargs["mask"] = torch.cat([prefix_cols, mask], dim=-1)
        return args, kwargs


class EncoderPrefix(EncoderPrefixInjector):
    """FFN (+ reweighter) producing per-layer key/value prefixes for the encoder's self-attention."""

    def __init__(self, config: EncoderPrefixConfig) -> None:
        super().__init__(config)
        self.ffn = PrefixEncoder(config.peft_config())
        dim = 2 * config.num_layers * config.inner_dim
        self.reweighter = PromptTokenReweighter(dim, config.reweighter_dim) if config.reweighter else None

    def flat(self) -> torch.Tensor:
        """FFN (+ reweighter) output, [1, P, 2 * layers * inner]."""
        out = self.ffn(self.tokens)
        return self.reweighter(out) if self.reweighter is not None else out

    # --- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ENCODER_PREFIX_CONFIG).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / ENCODER_PREFIX_WEIGHTS))

    @classmethod
    def load(cls, directory: str | Path) -> EncoderPrefix:
        directory = Path(directory)
        config = EncoderPrefixConfig(**json.loads((directory / ENCODER_PREFIX_CONFIG).read_text()))
        prefix = cls(config)
        prefix.load_state_dict(load_file(str(directory / ENCODER_PREFIX_WEIGHTS)))
        return prefix

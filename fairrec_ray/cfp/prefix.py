"""Prefix prompts for a frozen T5/P5: per-layer key/value prefixes on the encoder and the decoder.

* ``PrefixPrompt`` — the trainable part: PEFT's prefix-tuning reparameterisation (``PrefixEncoder``
  with ``prefix_projection=True``: embedding -> Linear -> tanh -> Linear to ``2 · layers · inner``
  per token, the paper's FFN) plus the Prompt Token Reweighter on its output. Saved as
  ``<side>_prefix.safetensors`` + ``<side>_prefix_config.json``.
* ``PrefixInjector`` — puts a prefix source into one T5 stack: a forward pre-hook computes the
  prefix once per stack call, and the stack's self-attention modules are registered with
  ``cfp.attention``, whose attention function prepends it (see there for why that route).

Why not PEFT's own injection: PEFT passes the prefix as ``past_key_values``, which on T5 only the
decoder reads — the encoder states, which the discriminator reads, stay bit-identical (a test pins
this) — and since transformers 5.24 ``generate()`` drops it for the decoder as well (its own cache
argument wins). So PEFT supplies the configuration and the FFN; injection is ours, on both sides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from peft import PrefixTuningConfig, TaskType
from peft.tuners.prefix_tuning import PrefixEncoder
from safetensors.torch import load_file, save_file
from torch import nn

from fairrec_ray.cfp import attention
from fairrec_ray.cfp.reweighter import PromptTokenReweighter
from fairrec_ray.errors import ConfigError

Side = Literal["encoder", "decoder"]
SIDES: tuple[Side, ...] = ("encoder", "decoder")


@dataclass(frozen=True)
class PrefixConfig:
    """Shape of one side's prefix; saved as ``<side>_prefix_config.json`` beside the weights."""

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

    @property
    def width(self) -> int:
        """Values per prefix token: a key and a value of ``inner_dim`` for every layer."""
        return 2 * self.num_layers * self.inner_dim

    def peft_config(self) -> PrefixTuningConfig:
        """The FFN's shape in PEFT's terms (builds PEFT's ``PrefixEncoder``)."""
        return PrefixTuningConfig(
            task_type=TaskType.SEQ_2_SEQ_LM,
            num_virtual_tokens=self.num_virtual_tokens,
            num_layers=self.num_layers,
            token_dim=self.inner_dim,
            num_attention_heads=self.num_heads,
            encoder_hidden_size=self.ffn_hidden,
            prefix_projection=True,
        )


def prefix_config_for(backbone_config: Any, side: Side, **prompt: Any) -> PrefixConfig:
    """Prefix shape for one side of a T5 config (T5 allows ``heads · d_kv != d_model`` and
    different encoder/decoder depths)."""
    layers = backbone_config.num_layers if side == "encoder" else backbone_config.num_decoder_layers
    return PrefixConfig(num_layers=layers, num_heads=backbone_config.num_heads, head_dim=backbone_config.d_kv, **prompt)


class PrefixSource(nn.Module):
    """Anything producing a prefix: ``flat()`` -> [1, P, width]."""

    def __init__(self, config: PrefixConfig) -> None:
        super().__init__()
        self.config = config

    def flat(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        """The prefix as [layers, 2 (key/value), heads, P, head_dim]."""
        c = self.config
        out = self.flat().reshape(c.num_virtual_tokens, c.num_layers, 2, c.num_heads, c.head_dim)
        return out.permute(1, 2, 3, 0, 4)


class PrefixPrompt(PrefixSource):
    """PEFT's prefix FFN (+ Prompt Token Reweighter): the trainable prompt of one side."""

    def __init__(self, config: PrefixConfig) -> None:
        super().__init__(config)
        self.ffn = PrefixEncoder(config.peft_config())
        self.reweighter = PromptTokenReweighter(config.width, config.reweighter_dim) if config.reweighter else None
        self.register_buffer("tokens", torch.arange(config.num_virtual_tokens)[None], persistent=False)

    def flat(self) -> torch.Tensor:
        out = self.ffn(self.tokens)
        return self.reweighter(out) if self.reweighter is not None else out

    # --- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path, side: Side) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / config_file(side)).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / weights_file(side)))

    @classmethod
    def load(cls, directory: str | Path, side: Side) -> PrefixPrompt:
        directory = Path(directory)
        for name in (config_file(side), weights_file(side)):
            if not (directory / name).is_file():
                legacy = " (saved by fairrec_ray < 0.2 as a PEFT adapter: re-train it)" if side == "decoder" else ""
                raise ConfigError(f"{directory}: not a CFP prompt folder ({name} missing){legacy}")
        try:
            prompt = cls(PrefixConfig(**json.loads((directory / config_file(side)).read_text())))
            prompt.load_state_dict(load_file(str(directory / weights_file(side))))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{directory / config_file(side)}: unreadable {side} prefix ({exc})") from None
        return prompt


def config_file(side: Side) -> str:
    return f"{side}_prefix_config.json"


def weights_file(side: Side) -> str:
    return f"{side}_prefix.safetensors"


def self_attention_modules(stack: nn.Module) -> list[nn.Module]:
    """The self-attention module of every block of a T5 stack (``block[i].layer[0]``)."""
    blocks = cast(list[Any], stack.block)  # T5Stack.block: an nn.ModuleList of T5Block
    return [block.layer[0].SelfAttention for block in blocks]


# stack -> the injector attached to it: a second prompt on the same backbone replaces the first
_OWNERS: weakref.WeakKeyDictionary[nn.Module, PrefixInjector] = weakref.WeakKeyDictionary()


class PrefixInjector:
    """Injects ``source`` into a T5 stack (encoder or decoder) while ``enabled``.

    ``source`` can be swapped at any time (a mixture, another attribute's prompt): the next stack
    call reads it. The prefix is computed once per stack call (with gradients when training) and
    broadcast over the batch — beams included — by the attention function."""

    def __init__(self, source: PrefixSource) -> None:
        self.source = source
        self.enabled = True
        self._layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._handles: list[Any] = []
        self._modules: list[nn.Module] = []
        self._stack: weakref.ref[nn.Module] | None = None

    def attach(self, stack: nn.Module) -> PrefixInjector:
        self.detach()
        previous = _OWNERS.get(stack)
        if previous is not None:
            previous.detach()
        modules = self_attention_modules(stack)
        if len(modules) != self.source.config.num_layers:
            raise ConfigError(
                f"the stack has {len(modules)} layers; the prefix was built for {self.source.config.num_layers}"
            )
        self._handles = [stack.register_forward_pre_hook(self._start), stack.register_forward_hook(self._finish)]
        self._modules = modules
        _OWNERS[stack] = self
        self._stack = weakref.ref(stack)
        for layer, module in enumerate(modules):
            attention.register_module(module, self, layer)
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        for module in self._modules:
            attention.unregister_module(module)
        stack = self._stack() if self._stack is not None else None
        if stack is not None and _OWNERS.get(stack) is self:
            del _OWNERS[stack]
        self._handles, self._modules, self._layers, self._stack = [], [], None, None

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous

    def current(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self._layers[layer] if self._layers is not None else None

    def _start(self, module: nn.Module, args: tuple) -> None:
        if not self.enabled:
            self._layers = None
            return
        kv = self.source()  # [layers, 2, heads, P, head_dim]
        self._layers = [(layer[0][None], layer[1][None]) for layer in kv]

    def _finish(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._layers = None

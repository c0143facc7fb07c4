"""Prefix key/values through transformers' documented *attention interface*.

Why here: passing prefixes as ``past_key_values`` depends on how each transformers release threads
its cache argument. 5.24 renamed it to ``cache=`` and T5 then dropped our encoder prefix (a shape
error inside attention) and, inside ``generate()``, silently dropped PEFT's decoder prefix (the
generation cache wins over PEFT's). ``AttentionInterface.register`` is the public extension point
(https://huggingface.co/docs/transformers/attention_interface): an attention function receives
``(module, query, key, value, attention_mask, **kwargs)`` after the model has projected the keys and
values, so a prefix prepended here reaches every call path — ``forward``, ``get_encoder()``,
``generate()`` with beams and its KV cache — without touching any private argument.

``install(model)`` switches a model from its base implementation (``eager`` or ``sdpa``) to
``fairrec_prefix_<base>``, which prepends the active prefix for registered self-attention modules
and calls the base implementation unchanged for every other module (and when no prefix is active).
Prefix keys carry no relative position (T5's position bias is zero for them, as in the UP5 code's
prefix); real tokens keep exactly the backbone's relative positions among themselves.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

PREFIX_IMPL = "fairrec_prefix_"
SUPPORTED_BASES = ("eager", "sdpa")


class PrefixProvider(Protocol):
    """Something that holds, during one stack call, a prefix per layer: ([B, H, P, d], [B, H, P, d])."""

    def current(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None: ...


# self-attention module -> (provider, layer index); weak so a dropped model leaves nothing behind
_PREFIXED: weakref.WeakKeyDictionary[nn.Module, tuple[PrefixProvider, int]] = weakref.WeakKeyDictionary()


def register_module(module: nn.Module, provider: PrefixProvider, layer: int) -> None:
    _PREFIXED[module] = (provider, layer)


def unregister_module(module: nn.Module) -> None:
    _PREFIXED.pop(module, None)


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ · scaling + position_bias + mask) v — T5's eager attention, op for op."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if position_bias is not None:
        weights = weights + position_bias
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # a boolean mask says where to attend
            attention_mask = torch.zeros_like(attention_mask, dtype=weights.dtype).masked_fill(
                ~attention_mask, torch.finfo(weights.dtype).min
            )
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _base_function(base: str) -> Callable[..., Any]:
    # T5's eager attention is local to its module: ours above is the same formula
    return eager_attention if base == "eager" else ALL_ATTENTION_FUNCTIONS[base]


def _causal_mask(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """[1, 1, Q, K] bool, bottom-right aligned (the last query sees every key): prefill and decode."""
    q_len, k_len = query.shape[2], key.shape[2]
    rows = torch.arange(q_len, device=key.device)[:, None] + (k_len - q_len)
    return (torch.arange(k_len, device=key.device)[None, :] <= rows)[None, None]


def with_prefix(
    prefix_key: torch.Tensor,
    prefix_value: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_bias: torch.Tensor | None,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Prepend P prefix keys/values; extend the mask (prefix always visible) and the position bias
    (zero for the prefix). A causal layer without a mask gets an explicit one, since the kernels'
    own causal flag would misalign once the prefix shifts the key positions."""
    batch, p = key.shape[0], prefix_key.shape[2]
    if prefix_key.shape[0] != batch:  # beams / a batch of 1 prefix: broadcast to the batch
        prefix_key = prefix_key.expand(batch, -1, -1, -1)
        prefix_value = prefix_value.expand(batch, -1, -1, -1)
    if attention_mask is None and causal and query.shape[2] > 1:
        attention_mask = _causal_mask(query, key)
    if attention_mask is not None:
        fill = torch.ones if attention_mask.dtype == torch.bool else torch.zeros
        cols = fill(*attention_mask.shape[:-1], p, dtype=attention_mask.dtype, device=attention_mask.device)
        attention_mask = torch.cat([cols, attention_mask], dim=-1)
    if position_bias is not None:
        zeros = position_bias.new_zeros(*position_bias.shape[:-1], p)
        position_bias = torch.cat([zeros, position_bias], dim=-1)
    key = torch.cat([prefix_key.to(key.dtype), key], dim=2)
    value = torch.cat([prefix_value.to(value.dtype), value], dim=2)
    return key, value, attention_mask, position_bias


def _prefix_attention(base: str) -> Callable[..., Any]:
    base_fn = _base_function(base)

    def attention(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        entry = _PREFIXED.get(module)
        prefix = entry[0].current(entry[1]) if entry is not None else None
        if prefix is not None:
            key, value, attention_mask, bias = with_prefix(
                prefix[0], prefix[1], query, key, value, attention_mask, kwargs.get("position_bias"),
                causal=bool(getattr(module, "is_causal", False) or getattr(module, "is_decoder", False)),
            )  # fmt: skip
            if "position_bias" in kwargs:
                kwargs["position_bias"] = bias
        return base_fn(module, query, key, value, attention_mask, **kwargs)

    return attention


def _register() -> None:
    for base in SUPPORTED_BASES:
        AttentionInterface.register(PREFIX_IMPL + base, _prefix_attention(base))
        AttentionMaskInterface.register(PREFIX_IMPL + base, ALL_MASK_ATTENTION_FUNCTIONS[base])


_register()


def base_implementation(model: nn.Module) -> str:
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    return impl.removeprefix(PREFIX_IMPL)


def install(model: Any) -> str:
    """Route ``model``'s attention through the prefix-aware wrapper of its current implementation;
    idempotent. Returns the base implementation (``eager`` or ``sdpa``)."""
    base = base_implementation(model)
    if base not in SUPPORTED_BASES:
        raise ValueError(f"attention implementation {base!r}: prefixes support {list(SUPPORTED_BASES)}")
    if model.config._attn_implementation != PREFIX_IMPL + base:
        model.set_attn_implementation(PREFIX_IMPL + base)
    return base

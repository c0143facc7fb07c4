"""Length bucketing: batches of prompts with similar token lengths, so little of a batch is padding.

UP5's user-only prompts ("What is the interaction history of user_N ?", ~10 tokens) and the
sequential prompts (~60 tokens with 20 history items) mixed in one batch would pad every short
prompt to the longest one. ``bucket_batches`` shuffles the epoch, cuts it into chunks of
``chunk_batches`` batches, sorts each chunk by (source, target) length and cuts it into batches,
then shuffles the order of the batches: each example lands in exactly one batch, batches stay
random in content across chunks, and the padding inside a batch is small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairrec_ray.errors import ConfigError

CHUNK_BATCHES = 64  # batches per sorted chunk: larger = less padding, less randomness


def plain_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Indices ``0..n-1`` in order, cut into batches of ``batch_size`` (the last may be short)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size: got {batch_size}; must be >= 1")
    return [np.arange(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]


def bucket_batches(
    source_lengths: Sequence[int],
    target_lengths: Sequence[int],
    batch_size: int,
    rng: np.random.Generator,
    chunk_batches: int = CHUNK_BATCHES,
) -> list[np.ndarray]:
    """Batches of example indices grouped by length (see the module docstring). The number of
    batches equals ``ceil(n / batch_size)``, as without bucketing (same schedule length)."""
    src = np.asarray(source_lengths, dtype=np.int64)
    tgt = np.asarray(target_lengths, dtype=np.int64)
    if src.shape != tgt.shape or src.ndim != 1:
        raise ConfigError(f"bucket_batches: got {src.shape} source and {tgt.shape} target lengths; need equal 1-D")
    if batch_size < 1 or chunk_batches < 1:
        raise ConfigError(f"bucket_batches: batch_size {batch_size} and chunk_batches {chunk_batches} must be >= 1")
    order = rng.permutation(len(src))
    chunk = batch_size * chunk_batches
    batches: list[np.ndarray] = []
    for lo in range(0, len(order), chunk):
        part = order[lo : lo + chunk]
        part = part[np.lexsort((tgt[part], src[part]))]  # by source length, then target length
        batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    # a short batch can only be the last of the last chunk; the shuffle moves it anywhere
    return [batches[i] for i in rng.permutation(len(batches))]


def padding_share(batches: Sequence[np.ndarray], lengths: Sequence[int]) -> float:
    """Share of padded positions when each batch is padded to its longest member."""
    lens = np.asarray(lengths, dtype=np.int64)
    padded = sum(len(b) * int(lens[b].max()) for b in batches if len(b))
    return 1.0 - float(lens.sum()) / padded if padded else 0.0

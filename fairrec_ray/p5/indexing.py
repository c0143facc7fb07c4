"""Item numbering for P5's id rendering: which number (and so which sub-tokens) each item gets.

P5 writes an item as a number that the tokenizer splits into pieces of at most two digits, so the
numbering decides which items share tokens. Hua et al. ("How to Index Item IDs for Recommendation
Foundation Models", 2023) showed the choice matters more than the model: random numbers share
tokens by accident, sequential numbers share them among items first seen together, and
*collaborative* numbers share them among items that are consumed by the same users.

- ``raw``: ``item_idx + 1``.
- ``sequential``: P5's indexing, in order of first appearance in the training sequences.
- ``collaborative``: every item is a four-digit number ``CCWW``: ``CC`` (10..99) is the item's
  cluster of co-consumed items (k-means on the truncated-SVD factors of the training user-item
  matrix), ``WW`` (00..99) its rank by training popularity inside the cluster. The tokenizer
  splits it into ``CC`` + ``##WW``: the first generated token picks a taste cluster, the second an
  item of it, and every history item tells the encoder its cluster through a shared token.

Users can get collaborative ids too (``user_indexing``): ``user_CCWW`` with ``CC`` the user's
cluster of users who consumed the same items. The user-id tokens then carry the user's long-term
taste beyond the prompt's 20 items — as P5's memorised user ids do after long training, which is
what UP5's user representation (encoder states over the user-id tokens) reads.

All numberings read the *training* sequences only (no validation/test leak).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from fairrec_ray.errors import ConfigError

ItemIndexing = Literal["raw", "sequential", "collaborative"]
# user ids: raw digit pieces (P5), collaborative CCWW digit pieces, independent (one token per user)
USER_INDEXINGS: tuple[str, ...] = ("raw", "collaborative", "independent")
INDEXINGS: tuple[str, ...] = ("raw", "sequential", "collaborative")
CLUSTER_CAPACITY = 100  # items per cluster: the ``WW`` piece has two digits
FIRST_PREFIX, LAST_PREFIX = 10, 99  # ``CC`` stays two digits, so every number has four
DEFAULT_CLUSTER_SIZE = 50  # mean items per cluster; leaves room in the 100-wide ``WW`` range


def item_numbers(
    indexing: str, train_sequences: Sequence[np.ndarray], n_items: int, seed: int = 0
) -> np.ndarray | None:
    """The numbers for ``indexing`` (None = the tokenizer's default, ``item_idx + 1``)."""
    if indexing == "raw":
        return None
    if indexing == "sequential":
        return sequential_item_numbers(train_sequences, n_items)
    if indexing == "collaborative":
        return collaborative_item_numbers(train_sequences, n_items, seed=seed)
    raise ConfigError(f"item_indexing: got {indexing!r}; expected one of {list(INDEXINGS)}")


def user_numbers(
    indexing: str, users: np.ndarray, train_sequences: Sequence[np.ndarray], n_users: int, n_items: int, seed: int = 0
) -> np.ndarray | None:
    """User numbers for ``indexing`` ("raw" and "independent": None = ``user_idx + 1``;
    "collaborative": ``CCWW``). ``users[row]`` is the user_idx whose training items are
    ``train_sequences[row]``. ("independent" differs from "raw" in the tokenizer: one whole token
    ``<user_N>`` per user, see ``build_tokenizer(user_tokens=True)``.)"""
    if indexing in ("raw", "independent"):
        return None
    if indexing != "collaborative":
        raise ConfigError(f"user_indexing: got {indexing!r}; expected one of {list(USER_INDEXINGS)}")
    rows = np.repeat(np.asarray(users, dtype=np.int64), [len(s) for s in train_sequences])
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in train_sequences]) if len(rows) else rows
    order = np.argsort(items, kind="stable")
    bounds = np.searchsorted(items[order], np.arange(n_items + 1))
    # Each item's set of users plays the role of a "sequence": users sharing items cluster together.
    consumers = [rows[order[bounds[i] : bounds[i + 1]]] for i in range(n_items)]
    return collaborative_item_numbers(consumers, n_users, seed=seed, what="users")


def sequential_item_numbers(train_sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """P5's sequential indexing: items numbered 1, 2, … in order of first appearance in the
    training sequences, unseen items after them in ``item_idx`` order."""
    order: dict[int, None] = {}
    for seq in train_sequences:
        for item in seq:
            order.setdefault(int(item), None)
    rest = [i for i in range(n_items) if i not in order]
    numbers = np.empty(n_items, dtype=np.int64)
    numbers[np.asarray(list(order) + rest, dtype=np.int64)] = np.arange(1, n_items + 1)
    return numbers


def collaborative_item_numbers(
    train_sequences: Sequence[np.ndarray],
    n_items: int,
    cluster_size: int = DEFAULT_CLUSTER_SIZE,
    n_factors: int = 32,
    seed: int = 0,
    what: str = "items",
) -> np.ndarray:
    """``CCWW`` numbers from k-means clusters of co-consumed items (see the module docstring).

    Clusters over ``CLUSTER_CAPACITY`` items are cut into capacity-sized runs (by popularity), so
    each run is its own ``CC``; items never seen in training fill the last clusters."""
    from scipy.sparse import csr_matrix
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD

    max_items = (LAST_PREFIX - FIRST_PREFIX + 1) * CLUSTER_CAPACITY
    if n_items > max_items:
        raise ConfigError(
            f"collaborative ids: {n_items} {what} do not fit four-digit ids (at most {max_items}); "
            "use 'sequential' or 'raw'"
        )
    if cluster_size < 1:
        raise ConfigError(f"cluster_size: got {cluster_size}; expected >= 1")
    rows = np.concatenate([np.full(len(s), u) for u, s in enumerate(train_sequences)]) if train_sequences else []
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in train_sequences]) if train_sequences else []
    popularity = np.bincount(np.asarray(cols, dtype=np.int64), minlength=n_items)
    seen = np.flatnonzero(popularity > 0)

    groups: list[np.ndarray] = []
    if len(seen):
        matrix = csr_matrix((np.ones(len(cols)), (cols, rows)), shape=(n_items, max(1, len(train_sequences))))
        n_clusters = int(np.clip(round(len(seen) / cluster_size), 1, len(seen)))
        factors = _item_factors(matrix[seen], n_factors, seed, TruncatedSVD)
        if n_clusters > 1:
            labels = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit_predict(factors)
        else:
            labels = np.zeros(len(seen), dtype=np.int64)
        # Biggest clusters first (stable), items inside by popularity: "00" = the cluster's hit.
        for label in sorted(np.unique(labels), key=lambda c: (-np.sum(labels == c), c)):
            members = seen[labels == label]
            members = members[np.argsort(-popularity[members], kind="stable")]
            groups += np.array_split(members, int(np.ceil(len(members) / CLUSTER_CAPACITY)))
    unseen = np.flatnonzero(popularity == 0)
    if len(unseen):
        groups += np.array_split(unseen, int(np.ceil(len(unseen) / CLUSTER_CAPACITY)))
    if len(groups) > LAST_PREFIX - FIRST_PREFIX + 1:
        raise ConfigError(
            f"collaborative ids: {len(groups)} clusters of {what} do not fit two-digit prefixes; "
            "raise cluster_size or use 'sequential'"
        )
    numbers = np.empty(n_items, dtype=np.int64)
    for prefix, members in zip(range(FIRST_PREFIX, LAST_PREFIX + 1), groups):
        numbers[members] = prefix * 100 + np.arange(len(members))
    return numbers


def _item_factors(item_user, n_factors: int, seed: int, svd_class) -> np.ndarray:
    """Row-normalised truncated-SVD factors of an item x user matrix (cosine geometry for k-means)."""
    k = min(n_factors, min(item_user.shape) - 1)
    if k < 1:
        return np.ones((item_user.shape[0], 1))
    factors = svd_class(n_components=k, random_state=seed).fit_transform(item_user.astype(np.float64))
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return factors / np.where(norms > 0, norms, 1.0)

"""Everything the FCPO env needs from a dataset, as plain numpy arrays (small, picklable).

``RecEnvData`` travels inside the RLlib ``env_config`` to every EnvRunner (and into checkpoints),
so runners never re-read the dataset or refit the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from fairrec_ray.data import RecDataset, fcpo_split, popular_items
from fairrec_ray.errors import ConfigError
from fairrec_ray.fcpo.embeddings import binary_matrix, cached_factorize, fold_in_query

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Ragged:
    """Per-user item lists in CSR form: user ``u`` owns ``items[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray
    items: np.ndarray

    @classmethod
    def from_lists(cls, lists: list[np.ndarray]) -> Ragged:
        lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, np.int64)
        return cls(indptr, items)

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def rows_of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row index into ``users``, item) pairs for every item of the selected users; vectorised."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        counts = ends - starts
        rows = np.repeat(np.arange(len(users)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.items[np.repeat(starts, counts) + offsets]


@dataclass(frozen=True)
class RecEnvData:
    """Item embeddings, the popular group G0 and per-user start states / held-out positives.

    ``history`` is what is masked at reset besides the start state: nothing extra for the train
    split; for the test split, the train feedback (already consumed before the test period).
    """

    item_emb: np.ndarray  # [n_items, dim] float32
    popular: np.ndarray  # [n_items] bool, G0
    train_start: np.ndarray  # [n_users, n_start]
    train_positives: Ragged
    test_start: np.ndarray
    test_positives: Ragged
    test_history: Ragged
    positive_threshold: float
    user_ids: np.ndarray  # dataset user_idx of each row
    mf_reg: float = 1.0  # ridge of the MF that made item_emb (the actor prior's fold-in uses it)
    # > 0: items are scored with one extra feature, ``exposure_scale`` on G0 items (0 elsewhere),
    # so the action gets one extra coordinate: a score offset for popular items (see build_env_data).
    exposure_scale: float = 0.0

    @property
    def n_items(self) -> int:
        return int(self.item_emb.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.train_start.shape[0])

    @property
    def dim(self) -> int:
        return int(self.item_emb.shape[1])

    @property
    def action_dim(self) -> int:
        """Size of the action ``w``: the embedding, plus the popular-item offset when enabled."""
        return self.dim + (1 if self.exposure_scale > 0 else 0)

    def scoring_matrix(self) -> np.ndarray:
        """``[n_items, action_dim]``: item ``i`` is scored ``w . row_i``."""
        if self.exposure_scale <= 0:
            return self.item_emb
        column = (self.popular * self.exposure_scale).astype(np.float32)[:, None]
        return np.ascontiguousarray(np.concatenate([self.item_emb, column], axis=1))

    @property
    def n_start(self) -> int:
        return int(self.train_start.shape[1])

    def split(self, split: Split) -> tuple[np.ndarray, Ragged, Ragged | None]:
        """(start states, held-out positives, extra history to mask) of ``split``."""
        if split == "train":
            return self.train_start, self.train_positives, None
        if split == "test":
            return self.test_start, self.test_positives, self.test_history
        raise ConfigError(f"split: got {split!r}; expected 'train' or 'test'")

    def train_item_counts(self) -> np.ndarray:
        seen = np.concatenate([self.train_start.ravel(), self.train_positives.items])
        return np.bincount(seen, minlength=self.n_items)


def build_env_data(
    dataset: RecDataset,
    *,
    positive_threshold: float = 4.0,
    n_start: int = 5,
    train_share: float = 0.8,
    popular_share: float = 0.2,
    emb_dim: int = 16,
    mf_reg: float = 10.0,
    mf_iters: int = 15,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    exposure_feature: float = 1.0,
) -> RecEnvData:
    """FCPO split of ``dataset`` + MF item embeddings fitted on the training part only.

    ``exposure_feature``: score items with one extra feature, the popular-group indicator times
    ``exposure_feature`` typical MF score gaps (``score_spread``), so the action has a coordinate
    that shifts every popular item's score at once (0 = no such feature). Without it the policy
    can only trade exposure by turning ``w`` inside the embedding space, and CPO's trust region
    made that too slow (ML-100K: alpha 0.25 and 0.1 still infeasible after 50 iterations)."""
    if emb_dim < 1:
        raise ConfigError(f"emb_dim: got {emb_dim}; expected an integer >= 1 (e.g. 32)")
    if exposure_feature < 0:  # checked before the MF fit, not after it
        raise ConfigError(f"exposure_feature: got {exposure_feature}; expected >= 0 (0 = off)")
    split = fcpo_split(dataset, positive_threshold=positive_threshold, n_start=n_start, train_share=train_share)
    n_items = dataset.n_items
    train_lists = [np.concatenate([s, p]) for s, p in zip(split.train_start, split.train_positives, strict=True)]
    matrix = binary_matrix(len(split), n_items, train_lists)
    _, item_emb = cached_factorize(matrix, dim=emb_dim, reg=mf_reg, iters=mf_iters, seed=seed, cache_dir=cache_dir)
    # Unit scale: the states' coordinates get root-mean-square 1 (MF's come out ~0.1). Rankings
    # (w . e) do not change; the ridge scales with it so the fold-in query is the same. Small
    # states make the actor's state-dependent weights nearly free in KL, and the CPO step then
    # spends its trust region fitting noise in them (measured: a -20 predicted, ~0 real cost change).
    scale = 1.0 / max(float(np.sqrt(np.mean(item_emb[split.train_start] ** 2))), 1e-12)
    item_emb, mf_reg = item_emb * scale, mf_reg * scale**2
    popular = popular_items(split.train_item_counts(n_items), top_share=popular_share)
    # Test period: everything before it (start + train feedback) is history.
    history = [np.setdiff1d(t, s) for t, s in zip(train_lists, split.test_start, strict=True)]
    exposure_scale = exposure_feature * score_spread(item_emb, mf_reg, split.train_start) if exposure_feature else 0.0
    return RecEnvData(
        item_emb=np.ascontiguousarray(item_emb, dtype=np.float32),
        popular=popular,
        train_start=split.train_start.astype(np.int64),
        train_positives=Ragged.from_lists(split.train_positives),
        test_start=split.test_start.astype(np.int64),
        test_positives=Ragged.from_lists(split.test_positives),
        test_history=Ragged.from_lists(history),
        positive_threshold=positive_threshold,
        user_ids=split.users,
        mf_reg=float(mf_reg),
        exposure_scale=float(exposure_scale),
    )


def score_spread(item_emb: np.ndarray, reg: float, windows: np.ndarray) -> float:
    """Mean over users of the std of the MF fold-in scores over items: the unit in which a score
    offset is "one typical score gap", so one unit of the exposure coordinate means the same on
    every dataset."""
    query = fold_in_query(item_emb, reg, windows)
    scores = (item_emb[windows].sum(1) @ query) @ item_emb.T
    return float(np.mean(scores.std(axis=1)))

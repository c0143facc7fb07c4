"""Everything the FCPO env needs from a dataset, as plain numpy arrays (small, picklable).

``RecEnvData`` travels inside the RLlib ``env_config`` to every EnvRunner (and into checkpoints),
so runners never re-read the dataset or refit the embeddings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from fairrec_ray.data import RecDataset, fcpo_split, popular_items
from fairrec_ray.errors import ConfigError
from fairrec_ray.fcpo.embeddings import binary_matrix, cached_factorize, fold_in_query
from fairrec_ray.fcpo.settings import EnvDataOptions

Split = Literal["train", "valid", "test"]


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
    split; for the validation split, the train feedback; for the test split, the train and
    validation feedback (all consumed before that period). Without a validation part
    (``valid_share = 0``) the ``valid_*`` fields are None.
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
    valid_start: np.ndarray | None = None
    valid_positives: Ragged | None = None
    valid_history: Ragged | None = None

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
        if split == "valid":
            if self.valid_start is None or self.valid_positives is None:
                raise ConfigError("split: got 'valid' but the env data has no validation part (valid_share = 0)")
            return self.valid_start, self.valid_positives, self.valid_history
        raise ConfigError(f"split: got {split!r}; expected 'train', 'valid' or 'test'")

    def eval_users(self, split: Split) -> np.ndarray:
        """User rows with at least one held-out positive in ``split`` (every user for train and
        test; validation may skip users with few positives)."""
        return np.flatnonzero(self.split(split)[1].lengths() > 0)

    def fingerprint(self) -> str:
        """A digest of what a policy trained on this data depends on (embeddings, groups, training
        start states and positives), e.g. to key derived values that must not be recomputed."""
        digest = hashlib.sha256()
        for array in (self.item_emb, self.popular, self.train_start, self.train_positives.indptr,
                      self.train_positives.items, np.float64(self.exposure_scale)):  # fmt: skip
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def train_item_counts(self) -> np.ndarray:
        seen = np.concatenate([self.train_start.ravel(), self.train_positives.items])
        return np.bincount(seen, minlength=self.n_items)


def build_env_data(
    dataset: RecDataset,
    options: EnvDataOptions | None = None,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> RecEnvData:
    """FCPO split of ``dataset`` + MF item embeddings fitted on the training part only.

    ``options.exposure_feature``: score items with one extra feature, the popular-group indicator
    times ``exposure_feature`` typical MF score gaps (``score_spread``), so the action has a
    coordinate that shifts every popular item's score at once (0 = no such feature). Without it
    the policy can only trade exposure by turning ``w`` inside the embedding space, and CPO's
    trust region made that too slow (README, FCPO)."""
    opts = options or EnvDataOptions()
    positive_threshold, n_start, emb_dim = opts.positive_threshold, opts.n_start, opts.emb_dim
    split = fcpo_split(
        dataset, positive_threshold, n_start=n_start, train_share=opts.train_share, valid_share=opts.valid_share
    )
    n_items = dataset.n_items
    train_lists = [np.concatenate([s, p]) for s, p in zip(split.train_start, split.train_positives, strict=True)]
    matrix = binary_matrix(len(split), n_items, train_lists)
    _, item_emb = cached_factorize(
        matrix, dim=emb_dim, reg=opts.mf_reg, iters=opts.mf_iters, seed=seed, cache_dir=cache_dir
    )
    # Unit scale: the states' coordinates get root-mean-square 1 (MF's come out ~0.1). Rankings
    # (w . e) do not change; the ridge scales with it so the fold-in query is the same. Small
    # states make the actor's state-dependent weights nearly free in KL, and the CPO step then
    # spends its trust region fitting noise in them (measured: a -20 predicted, ~0 real cost change).
    scale = 1.0 / max(float(np.sqrt(np.mean(item_emb[split.train_start] ** 2))), 1e-12)
    item_emb, mf_reg = item_emb * scale, opts.mf_reg * scale**2
    popular = popular_items(split.train_item_counts(n_items), top_share=opts.popular_share)
    # Each evaluation period's history: everything consumed before it, minus its start state.
    before_test, valid = train_lists, cast(dict[str, Any], {})
    if split.valid_start is not None and split.valid_positives is not None:
        before_test = [np.concatenate([t, v]) for t, v in zip(train_lists, split.valid_positives, strict=True)]
        valid = {
            "valid_start": split.valid_start.astype(np.int64),
            "valid_positives": Ragged.from_lists(split.valid_positives),
            "valid_history": _histories(train_lists, split.valid_start),
        }
    feature = opts.exposure_feature
    exposure_scale = feature * score_spread(item_emb, mf_reg, split.train_start) if feature else 0.0
    return RecEnvData(
        item_emb=np.ascontiguousarray(item_emb, dtype=np.float32),
        popular=popular,
        train_start=split.train_start.astype(np.int64),
        train_positives=Ragged.from_lists(split.train_positives),
        test_start=split.test_start.astype(np.int64),
        test_positives=Ragged.from_lists(split.test_positives),
        test_history=_histories(before_test, split.test_start),
        positive_threshold=positive_threshold,
        user_ids=split.users,
        mf_reg=float(mf_reg),
        exposure_scale=float(exposure_scale),
        **valid,
    )


def _histories(consumed: list[np.ndarray], start: np.ndarray) -> Ragged:
    return Ragged.from_lists([np.setdiff1d(c, s) for c, s in zip(consumed, start, strict=True)])


def score_spread(item_emb: np.ndarray, reg: float, windows: np.ndarray) -> float:
    """Mean over users of the std of the MF fold-in scores over items: the unit in which a score
    offset is "one typical score gap", so one unit of the exposure coordinate means the same on
    every dataset."""
    query = fold_in_query(item_emb, reg, windows)
    scores = (item_emb[windows].sum(1) @ query) @ item_emb.T
    return float(np.mean(scores.std(axis=1)))

"""Deterministic splits: leave-one-out by time (P5/CFP) and the FCPO start-state/feedback split."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fairrec_ray.data.schema import RecDataset
from fairrec_ray.errors import DataError

log = logging.getLogger(__name__)

NO_ITEM = -1


@dataclass
class LeaveOneOutSplit:
    """Per kept user: ``train`` = all but the last two items (in time order), ``valid`` = second
    last, ``test`` = last. A user with exactly 2 interactions has no validation item (``NO_ITEM``).

    Evaluation histories: validation reads ``train``; test reads ``train + [valid]``.
    """

    users: np.ndarray  # user_idx of kept users
    train: list[np.ndarray]  # time-ordered training items, aligned with ``users``
    valid: np.ndarray  # item or NO_ITEM
    test: np.ndarray
    n_dropped: int

    def __len__(self) -> int:
        return len(self.users)

    def test_history(self, row: int) -> np.ndarray:
        if self.valid[row] == NO_ITEM:
            return self.train[row]
        return np.append(self.train[row], self.valid[row])

    def train_item_counts(self, n_items: int) -> np.ndarray:
        return np.bincount(np.concatenate(self.train), minlength=n_items)


def leave_one_out(dataset: RecDataset, min_interactions: int = 3) -> LeaveOneOutSplit:
    """Split each user's time-ordered sequence; users with fewer than ``min_interactions`` are
    dropped (count logged). ``min_interactions`` must be >= 2 (one train item, one test item)."""
    if min_interactions < 2:
        raise DataError(f"leave_one_out: min_interactions must be >= 2, got {min_interactions}")
    users, train, valid, test = [], [], [], []
    for u, seq in enumerate(dataset.user_sequences()):
        if len(seq) < min_interactions:
            continue
        users.append(u)
        if len(seq) == 2:
            train.append(seq[:1])
            valid.append(NO_ITEM)
        else:
            train.append(seq[:-2])
            valid.append(seq[-2])
        test.append(seq[-1])
    n_dropped = dataset.n_users - len(users)
    if n_dropped:
        log.info("leave_one_out: dropped %d users with < %d interactions", n_dropped, min_interactions)
    if not users:
        raise DataError(f"dataset {dataset.name!r}: no user has >= {min_interactions} interactions")
    return LeaveOneOutSplit(
        np.asarray(users, dtype=np.int64), train, np.asarray(valid, np.int64), np.asarray(test, np.int64), n_dropped
    )


class FCPONotApplicable(DataError):
    """No user has enough positives for an FCPO start state plus held-out feedback, e.g. ownership
    data (every owned product has the same rating, users own 2-3 of 21). ``reason`` is the message
    without the dataset name, for reports such as ``describe``."""

    def __init__(self, dataset: str, reason: str, max_positives: int) -> None:
        super().__init__(f"dataset {dataset!r}: FCPO does not apply: {reason}")
        self.reason = reason
        self.max_positives = max_positives


@dataclass
class FCPOSplit:
    """FCPO data (reference protocol): per kept user, time-ordered positives; the first
    ``n_start`` form the training start state; the rest split ``train_share`` / rest in time into
    train and test feedback; the test start state is the last ``n_start`` items before the test
    feedback (the end of ``start + train + valid``). With ``valid_share > 0`` the end of the train
    part (that share of the later positives, leaving at least one train positive) is held out as
    validation feedback, with its own start state (the last ``n_start`` items before it); the test
    part is the same with or without validation. Users with few positives may have none."""

    users: np.ndarray
    train_start: np.ndarray  # [n_users, n_start] item indices
    train_positives: list[np.ndarray]
    test_start: np.ndarray  # [n_users, n_start]
    test_positives: list[np.ndarray]
    positive_threshold: float
    n_dropped: int
    valid_start: np.ndarray | None = None  # [n_users, n_start] when valid_share > 0
    valid_positives: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.users)

    def train_item_counts(self, n_items: int) -> np.ndarray:
        """Training exposure: start states plus train feedback."""
        seen = np.concatenate([self.train_start.ravel(), *self.train_positives])
        return np.bincount(seen, minlength=n_items)


def fcpo_split(
    dataset: RecDataset,
    positive_threshold: float = 4.0,
    n_start: int = 5,
    train_share: float = 0.8,
    valid_share: float = 0.0,
) -> FCPOSplit:
    """Users need ``n_start`` positives plus at least one train and one test positive."""
    if not 0.0 < train_share < 1.0:
        raise DataError(f"fcpo_split: train_share must be in (0, 1), got {train_share}")
    if not 0.0 <= valid_share < train_share:
        raise DataError(f"fcpo_split: valid_share must be in [0, train_share), got {valid_share}")
    if n_start < 1:
        raise DataError(f"fcpo_split: n_start must be >= 1, got {n_start}")
    positives = dataset.interactions[dataset.interactions["rating"] >= positive_threshold]
    ordered = positives.sort_values(["user_idx", "timestamp"], kind="stable")
    user_col, item_col = ordered["user_idx"].to_numpy(), ordered["item_idx"].to_numpy()
    bounds = np.searchsorted(user_col, np.arange(dataset.n_users + 1))
    users, tr_start, tr_pos, va_start, va_pos, te_start, te_pos = [], [], [], [], [], [], []
    for u in range(dataset.n_users):
        seq = item_col[bounds[u] : bounds[u + 1]]
        rest = seq[n_start:]
        if len(rest) < 2:
            continue
        n_before_test = min(max(1, int(round(train_share * len(rest)))), len(rest) - 1)
        n_train = n_before_test - min(int(round(valid_share * len(rest))), n_before_test - 1)
        users.append(u)
        tr_start.append(seq[:n_start])
        tr_pos.append(rest[:n_train])
        va_start.append(seq[n_train : n_start + n_train])
        va_pos.append(rest[n_train:n_before_test])
        te_start.append(seq[n_before_test : n_start + n_before_test])
        te_pos.append(rest[n_before_test:])
    if not users:  # raised before the "dropped" log so a CLI prints one line
        raise _not_applicable(dataset, positive_threshold, n_start, int(np.diff(bounds).max(initial=0)))
    n_dropped = dataset.n_users - len(users)
    if n_dropped:
        log.info("fcpo_split: dropped %d users with < %d positives", n_dropped, n_start + 2)
    valid = valid_share > 0
    return FCPOSplit(
        np.asarray(users, np.int64), np.stack(tr_start), tr_pos, np.stack(te_start), te_pos,
        positive_threshold, n_dropped, np.stack(va_start) if valid else None, va_pos if valid else None,
    )  # fmt: skip


def _not_applicable(
    dataset: RecDataset, positive_threshold: float, n_start: int, max_positives: int
) -> FCPONotApplicable:
    reason = (
        f"no user has >= {n_start + 2} positives (rating >= {positive_threshold}) for a {n_start}-item start "
        f"state plus held-out train and test feedback; max positives per user is {max_positives}"
    )
    ratings = dataset.interactions["rating"].to_numpy()
    max_interactions = int(np.bincount(dataset.interactions["user_idx"].to_numpy()).max(initial=0))
    # Say why positives are scarce: few interactions per user, and/or ratings carry no preference.
    notes = [f"max interactions per user: {max_interactions}"]
    if len(ratings) and ratings.min() == ratings.max():
        notes.append(f"every rating is {ratings[0]:g}, as in ownership data")
    return FCPONotApplicable(dataset.name, f"{reason} ({'; '.join(notes)})", max_positives)


def popular_items(train_counts: np.ndarray, top_share: float = 0.2) -> np.ndarray:
    """Boolean mask of the popular group G0: the top ``top_share`` of items by training count
    (ties broken by lower item index, so the group has exactly round(top_share * n_items) items)."""
    if not 0.0 < top_share < 1.0:
        raise DataError(f"popular_items: top_share must be in (0, 1), got {top_share}")
    n_popular = max(1, int(round(top_share * len(train_counts))))
    order = np.lexsort((np.arange(len(train_counts)), -train_counts))
    mask = np.zeros(len(train_counts), dtype=bool)
    mask[order[:n_popular]] = True
    return mask


@dataclass(frozen=True)
class UserPartition:
    """Rows (positions in a split's ``users``) of three disjoint user groups: ``train`` (prompt and
    discriminator training), ``valid`` (best-epoch selection) and ``heldout`` (what is reported)."""

    train: np.ndarray
    valid: np.ndarray
    heldout: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "heldout": len(self.heldout)}


def partition_users(labels: np.ndarray, valid_share: float, heldout_share: float, seed: int) -> UserPartition:
    """Stratified, seeded partition of the rows of ``labels`` ([n] classes, or [n, k]: k attributes,
    stratified jointly in column order).

    Rows are ordered by their labels (lexicographically) with a seeded random order inside every
    cell, then dealt out one by one to the part furthest below its quota ``(p + 1)·share`` (ties:
    held-out, valid, train). Every prefix of that order — hence every class of the first column,
    and every cell within ±1 — holds each part's share within one row; a class whose size times a
    share is an integer gets exactly that many."""
    if not (0.0 <= valid_share < 1.0 and 0.0 <= heldout_share < 1.0 and valid_share + heldout_share < 1.0):
        raise DataError(
            f"partition_users: valid_share={valid_share}, heldout_share={heldout_share}; expected each in [0, 1) "
            "with a sum below 1"
        )
    labels = np.asarray(labels).reshape(len(labels), -1)
    rng = np.random.default_rng([seed, 20_11])
    order = np.lexsort((rng.random(len(labels)), *labels.T[::-1]))
    shares = np.array([heldout_share, valid_share, 1.0 - heldout_share - valid_share])
    counts = np.zeros(3)
    part = np.empty(len(labels), np.int64)
    for position, row in enumerate(order):
        chosen = int(np.argmax((position + 1) * shares - counts - 1e-9 * np.arange(3)))
        counts[chosen] += 1
        part[row] = chosen
    rows = [np.flatnonzero(part == k).astype(np.int64) for k in range(3)]
    return UserPartition(train=rows[2], valid=rows[1], heldout=rows[0])


def partition_split_users(
    dataset: RecDataset, split: LeaveOneOutSplit, valid_share: float, heldout_share: float, seed: int
) -> UserPartition:
    """``partition_users`` over the split's rows, stratified jointly by every attribute of the
    dataset (sorted by name): every job on a dataset with the same shares and seed holds out the
    same users, whichever attribute it is about."""
    labels = np.stack([dataset.attribute_labels(a)[split.users] for a in sorted(dataset.attributes)], axis=1)
    return partition_users(labels, valid_share, heldout_share, seed)


def subset_split(split: LeaveOneOutSplit, rows: np.ndarray) -> LeaveOneOutSplit:
    """The split restricted to ``rows`` (in that order); the other users are absent from it."""
    rows = np.asarray(rows, dtype=np.int64)
    return LeaveOneOutSplit(
        split.users[rows], [split.train[r] for r in rows], split.valid[rows], split.test[rows], split.n_dropped
    )


@dataclass
class ByUserSplit:
    """Insurance the UP5 way: users (not interactions) split into train / valid / test. A training
    user's whole product list is training data; a valid or test user (never seen in training) has
    every product but one in the prompt (``history``) and that one as the ``target``."""

    train_users: np.ndarray  # user_idx
    train_items: list[np.ndarray]  # every product of each training user (seeded order)
    valid_users: np.ndarray
    valid_history: list[np.ndarray]
    valid_target: np.ndarray
    test_users: np.ndarray
    test_history: list[np.ndarray]
    test_target: np.ndarray
    n_dropped: int


def by_user_split(
    dataset: RecDataset,
    shares: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    min_items: int = 2,
    stratify: str | None = None,
) -> ByUserSplit:
    """Users with >= ``min_items`` products, split by user in ``shares`` (train, valid, test),
    stratified by the ``stratify`` attribute when given; each held-out user's last product (in the
    dataset's order, seeded for Insurance) is the target, the others are the prompt's history."""
    if len(shares) != 3 or min(shares) < 0 or not np.isclose(sum(shares), 1.0):
        raise DataError(f"by_user_split: shares must be 3 non-negative numbers summing to 1, got {shares}")
    if min_items < 2:
        raise DataError(f"by_user_split: min_items must be >= 2 (history + target), got {min_items}")
    sequences = dataset.user_sequences()
    kept = np.asarray([u for u, seq in enumerate(sequences) if len(seq) >= min_items], dtype=np.int64)
    if not len(kept):
        raise DataError(f"dataset {dataset.name!r}: no user has >= {min_items} products")
    labels = dataset.attribute_labels(stratify)[kept] if stratify else np.zeros(len(kept), np.int64)
    part = partition_users(labels, valid_share=shares[1], heldout_share=shares[2], seed=seed)

    def held(rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        users = kept[rows]
        return users, [sequences[u][:-1] for u in users], np.asarray([sequences[u][-1] for u in users], np.int64)

    train_users = kept[part.train]
    n_dropped = dataset.n_users - len(kept)
    if n_dropped:
        log.info("by_user_split: dropped %d users with < %d products", n_dropped, min_items)
    return ByUserSplit(
        train_users, [sequences[u] for u in train_users], *held(part.valid), *held(part.heldout), n_dropped
    )

"""The fairness protocol's user partitions and the Insurance by-user split (pure numpy, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import insurance_row, ownership_rows, write_insurance

from fairrec_ray.data.insurance import load_insurance
from fairrec_ray.data.splits import by_user_split, partition_users
from fairrec_ray.errors import DataError


def test_partition_is_disjoint_complete_stratified_and_seeded():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    part = partition_users(labels, valid_share=0.1, heldout_share=0.2, seed=3)
    everything = np.concatenate([part.train, part.valid, part.heldout])
    assert sorted(everything) == list(range(100))  # disjoint and complete
    # stratified: 20 % / 10 % of every class, exactly (shares times class counts are integers here)
    assert np.bincount(labels[part.heldout]).tolist() == [12, 6, 2]
    assert np.bincount(labels[part.valid]).tolist() == [6, 3, 1]
    assert part.sizes() == {"train": 70, "valid": 10, "heldout": 20}
    again = partition_users(labels, valid_share=0.1, heldout_share=0.2, seed=3)
    other = partition_users(labels, valid_share=0.1, heldout_share=0.2, seed=4)
    assert np.array_equal(again.heldout, part.heldout) and np.array_equal(again.valid, part.valid)
    assert not np.array_equal(other.heldout, part.heldout)


def test_joint_partition_is_stratified_by_every_attribute():
    rng = np.random.default_rng(0)
    labels = np.stack([rng.integers(0, 7, 900), rng.integers(0, 2, 900), rng.integers(0, 5, 900)], axis=1)
    part = partition_users(labels, valid_share=0.1, heldout_share=0.2, seed=0)
    assert len(np.intersect1d(part.heldout, part.valid)) == len(np.intersect1d(part.heldout, part.train)) == 0
    for column, slack in ((0, 1), (1, 7), (2, 7)):  # the first column exactly up to rounding, others per cell
        total = np.bincount(labels[:, column])
        held = np.bincount(labels[part.heldout, column], minlength=len(total))
        assert np.all(np.abs(held - 0.2 * total) <= slack + 1e-9), (column, held, 0.2 * total)


def test_partition_with_zero_shares_keeps_everyone_in_train():
    part = partition_users(np.array([0, 1, 0, 1]), valid_share=0.0, heldout_share=0.0, seed=0)
    assert part.train.tolist() == [0, 1, 2, 3] and len(part.valid) == len(part.heldout) == 0


@pytest.mark.parametrize("valid, held", [(0.5, 0.5), (-0.1, 0.2), (0.2, 1.0)])
def test_partition_rejects_bad_shares(valid, held):
    with pytest.raises(DataError, match="partition_users: valid_share=.*expected each in"):
        partition_users(np.zeros(10), valid, held, seed=0)


def test_insurance_by_user_split_keeps_test_users_out_of_training(tmp_path):
    rows = ownership_rows(40) + [insurance_row("SOLO", "M", "M", "1980", "T4MS", (4,))]  # one product: dropped
    dataset = load_insurance(write_insurance(tmp_path, rows), seed=0)
    split = by_user_split(dataset, (0.8, 0.1, 0.1), seed=1, stratify="sex")
    train, valid, test = set(split.train_users), set(split.valid_users), set(split.test_users)
    assert not (train & test) and not (train & valid) and not (valid & test)
    assert len(train | valid | test) == 40 and split.n_dropped == 1
    assert len(test) == len(valid) == 4
    sequences = dataset.user_sequences()
    for users, history, target in (
        (split.test_users, split.test_history, split.test_target),
        (split.valid_users, split.valid_history, split.valid_target),
    ):
        for u, h, t in zip(users, history, target):
            # every product but one in the prompt, the remaining one is the target
            assert sorted([*h, t]) == sorted(sequences[u]) and t not in h and len(h) == len(sequences[u]) - 1
    # training users contribute all their products; no test user's product list appears there
    assert all(len(items) == len(sequences[u]) for u, items in zip(split.train_users, split.train_items))
    again = by_user_split(dataset, (0.8, 0.1, 0.1), seed=1, stratify="sex")
    assert split.test_users.tolist() == again.test_users.tolist()  # seeded


def test_by_user_split_rejects_bad_shares(tmp_path):
    dataset = load_insurance(write_insurance(tmp_path, ownership_rows(10)))
    with pytest.raises(DataError, match="shares must be 3 non-negative numbers summing to 1"):
        by_user_split(dataset, (0.8, 0.1, 0.2))

"""Item numberings: collaborative ``CCWW`` ids group co-consumed items under one first token."""

from __future__ import annotations

import numpy as np
import pytest

from fairrec_ray.errors import ConfigError
from fairrec_ray.p5 import build_tokenizer
from fairrec_ray.p5.indexing import collaborative_item_numbers, item_numbers


def planted_blocks(n_blocks: int = 3, items_per_block: int = 20, users_per_block: int = 15, seed: int = 0):
    """Users of block b consume only items of block b (random subsets, so popularity varies)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for b in range(n_blocks):
        block = np.arange(b * items_per_block, (b + 1) * items_per_block)
        for _ in range(users_per_block):
            seqs.append(rng.permutation(rng.choice(block, size=12, replace=False)))
    return seqs


def test_collaborative_ids_put_each_co_consumed_block_under_one_prefix():
    seqs = planted_blocks()
    numbers = collaborative_item_numbers(seqs, n_items=62, cluster_size=20)  # items 60, 61 never seen
    assert len(set(numbers.tolist())) == 62 and numbers.min() >= 1000 and numbers.max() <= 9999
    prefix = numbers // 100
    for b in range(3):
        assert len(set(prefix[b * 20 : (b + 1) * 20].tolist())) == 1, f"block {b} split over prefixes"
    assert len(set(prefix[:60].tolist())) == 3
    assert prefix[60] == prefix[61] and prefix[60] not in set(prefix[:60].tolist())  # unseen last
    # inside a cluster, "00" is its most consumed item
    popularity = np.bincount(np.concatenate(seqs), minlength=62)
    for b in range(3):
        block = np.arange(b * 20, (b + 1) * 20)
        assert numbers[block[np.argmax(popularity[block])]] % 100 == 0


def test_collaborative_ids_tokenize_as_cluster_then_item():
    numbers = collaborative_item_numbers(planted_blocks(), n_items=60, cluster_size=20)
    tok = build_tokenizer(n_users=45, n_items=60, item_numbers=numbers)
    for item in range(60):
        pieces = tok.tokens(tok.item_text(item))
        assert pieces == [str(numbers[item] // 100), f"##{numbers[item] % 100:02d}"]
    assert len(set(tok.item_token_ids())) == 60  # the trie needs distinct token sequences


def test_oversized_clusters_are_cut_into_runs_of_at_most_100():
    rng = np.random.default_rng(0)
    seqs = [rng.choice(250, size=200, replace=False) for _ in range(4)]  # one cluster of 250 items
    numbers = collaborative_item_numbers(seqs, n_items=250, cluster_size=250)
    sizes = np.bincount(numbers // 100)[10:]
    assert sorted(sizes.tolist()) == [83, 83, 84]  # three near-equal runs, each within the 100-wide WW range
    assert len(set(numbers.tolist())) == 250


def test_collaborative_ids_refuse_what_four_digits_cannot_hold():
    with pytest.raises(ConfigError, match="9001 items do not fit four-digit ids"):
        collaborative_item_numbers([np.arange(5)], n_items=9001)
    with pytest.raises(ConfigError, match="item_indexing: got 'random'"):
        item_numbers("random", [np.arange(5)], 5)
    assert item_numbers("raw", [np.arange(5)], 5) is None


def test_collaborative_user_ids_group_users_with_shared_items_and_round_trip(tmp_path):
    from fairrec_ray.p5.indexing import user_numbers
    from fairrec_ray.p5.tokenizer import P5Tokenizer

    seqs = planted_blocks()  # users 0-14 use block 0, 15-29 block 1, 30-44 block 2
    users = np.arange(45)[::-1].copy()  # split rows need not be in user order
    numbers = user_numbers("collaborative", users, seqs, n_users=46, n_items=60)
    assert numbers is not None and len(set(numbers.tolist())) == 46
    prefix = numbers // 100
    for b in range(3):
        assert len(set(prefix[users[b * 15 : (b + 1) * 15]].tolist())) == 1, f"user block {b} split"
    assert prefix[45] not in set(prefix[:45].tolist())  # user 45 has no training items
    tok = build_tokenizer(n_users=46, n_items=60, user_numbers=numbers)
    assert tok.user_text(7) == f"user_{numbers[7]}"
    assert tok.tokens(tok.user_text(7)) == ["user_", f"##{numbers[7] // 100}", f"##{numbers[7] % 100:02d}"]
    tok.save(tmp_path)
    assert P5Tokenizer.load(tmp_path).user_text(7) == tok.user_text(7)
    assert user_numbers("raw", users, seqs, 46, 60) is None
    with pytest.raises(ConfigError, match="user_indexing: got 'sequential'"):
        user_numbers("sequential", users, seqs, 46, 60)

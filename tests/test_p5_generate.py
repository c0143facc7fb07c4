"""Trie-constrained beam search, candidate protocols, ranking metrics and baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairrec_ray.data import SyntheticConfig, generate_synthetic, leave_one_out
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5 import build_tokenizer
from fairrec_ray.p5.baselines import BPRConfig, bpr_scores, most_pop_scores
from fairrec_ray.p5.candidates import candidate_mask, rank_of_gold
from fairrec_ray.p5.evaluate import evaluate_model, evaluate_scores, rank_metrics
from fairrec_ray.p5.examples import eval_history
from fairrec_ray.p5.generate import beam_items
from fairrec_ray.p5.model import P5Model, preset_config
from fairrec_ray.p5.trie import ItemTrie

TINY = dict(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2)
N_ITEMS = 150  # ids 1..150: 1-, 2- and 3-digit ids, some sharing prefixes (1, 12, 120, 121 ...)


@pytest.fixture(scope="module")
def data():
    ds = generate_synthetic(SyntheticConfig(n_users=40, n_items=N_ITEMS, mean_interactions=12, min_interactions=5))
    split = leave_one_out(ds)
    tok = build_tokenizer(ds.n_users, ds.n_items)
    torch.manual_seed(0)
    model = P5Model(preset_config("tiny", tok.vocab_size, **TINY)).eval()
    model.set_word_starts(tok.word_start_flags())
    return ds, split, tok, model


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    n_cand=st.integers(1, 40),
    num_beams=st.sampled_from([1, 5, 20]),
    weight_seed=st.integers(0, 3),
)
def test_constrained_beams_only_yield_valid_candidates(data, seed, n_cand, num_beams, weight_seed):
    _, _, tok, model = data
    rng = np.random.default_rng(seed)
    mask = np.zeros((3, N_ITEMS), dtype=bool)
    for row in mask:
        row[rng.choice(N_ITEMS, size=n_cand, replace=False)] = True
    torch.manual_seed(weight_seed)  # a different random model each time: the constraint must hold anyway
    with torch.no_grad():
        model.lm_head.weight.normal_()
    ids = torch.tensor(
        [tok.encode(f"Given the following interaction history of user_{i + 1} : 3 , 17") for i in range(3)]
    )
    trie = ItemTrie(tok.item_token_ids(), tok.eos_id, tok.vocab_size)
    items = beam_items(model, tok, ids, torch.ones_like(ids), mask, trie, num_beams)
    for row, ranked in zip(mask, items):
        valid = ranked[ranked >= 0]
        assert row[valid].all(), "a generated id is not a candidate"
        assert len(set(valid.tolist())) == len(valid)
        assert len(valid) == min(num_beams, n_cand)


def test_ranking_metrics_on_hand_made_ranks():
    ranks = np.array([0, 2, 4, 9, -1])
    m = rank_metrics(ranks)
    assert m["hit@1"] == pytest.approx(0.2)
    assert m["hit@3"] == pytest.approx(0.4)
    assert m["hit@5"] == pytest.approx(0.6)
    assert m["hit@10"] == pytest.approx(0.8)
    expected5 = (1 + 1 / np.log2(4) + 1 / np.log2(6)) / 5
    assert m["ndcg@5"] == pytest.approx(expected5)
    assert m["ndcg@10"] == pytest.approx(expected5 + 1 / np.log2(11) / 5)


def test_rank_of_gold_breaks_ties_by_item_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [0.0, 0.0, 0.0, 0.0]])
    mask = np.array([[True, False, True, True], [True, True, True, True]])
    assert rank_of_gold(scores, mask, np.array([2, 3])).tolist() == [1, 3]  # item 1 is not a candidate


def test_candidate_protocols(data):
    ds, split, _, _ = data
    rows = np.arange(len(split))
    full = candidate_mask(split, "full", "test", rows, ds.n_items)
    sampled = candidate_mask(split, "sampled-100", "test", rows, ds.n_items, seed=1)
    for r in rows:
        hist = eval_history(split, r, "test")
        assert not full[r, hist].any() and full[r, split.test[r]]
        assert full[r].sum() == ds.n_items - len(set(hist.tolist()) - {split.test[r]})
        n_seen = len({*split.train[r].tolist(), split.valid[r], split.test[r]} - {-1})
        assert sampled[r].sum() == 1 + min(100, ds.n_items - n_seen) and sampled[r, split.test[r]]
        assert not sampled[r, split.train[r]].any()
    again = candidate_mask(split, "sampled-100", "test", rows, ds.n_items, seed=1)
    np.testing.assert_array_equal(sampled, again)
    with pytest.raises(ConfigError, match="protocol"):
        candidate_mask(split, "sampled-50", "test", rows, ds.n_items)


def test_evaluate_model_contract(data):
    _, split, tok, model = data
    out = evaluate_model(model, tok, split, protocol="sampled-100", stage="test", batch_size=16, num_beams=20)
    assert {"hit@1", "hit@3", "hit@5", "hit@10", "ndcg@5", "ndcg@10", "protocol", "users"} <= set(out)
    assert out["users"] == len(split) and out["protocol"] == "sampled-100"
    assert 0.0 <= out["hit@1"] <= out["hit@5"] <= out["hit@10"] <= 1.0
    with pytest.raises(ConfigError, match="batched"):
        evaluate_model(model, tok, split, protocol="full", batch_size=1)


def test_baselines_rank_with_the_shared_evaluator(data):
    ds, split, _, _ = data
    pop = evaluate_scores(most_pop_scores(split, ds.n_items), split, protocol="full")
    bpr = evaluate_scores(bpr_scores(split, ds.n_items, cfg=BPRConfig(epochs=5)), split, protocol="full")
    assert pop["users"] == bpr["users"] == len(split)
    a = bpr_scores(split, ds.n_items, cfg=BPRConfig(epochs=2, seed=3))
    b = bpr_scores(split, ds.n_items, cfg=BPRConfig(epochs=2, seed=3))
    np.testing.assert_allclose(a, b, atol=1e-5)

"""Unit tests of fairrec_ray.metrics: hand-computed fixtures, sklearn references, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from fairrec_ray.metrics import (
    METRICS,
    exposure_counts,
    gini_index,
    hit_at_k,
    metric_mode,
    metric_spec,
    ndcg_at_k,
    pareto_front,
    popularity_rate,
    precision_recall_f1_ndcg_at_k,
    roc_auc,
    violation_rate,
)

D1 = 1 / math.log2(3)  # discount of position 1 (0-based)

# 4 users x 6 items, K = 3. User 3 had 3 held-out positives before the rollout; one was consumed.
REC = np.array([[0, 1, 2], [3, 4, 5], [0, 3, 1], [5, 2, 0]])
RELEVANT = [{1, 5}, {3, 4, 5}, {2}, {0, 2}]
N_BEFORE = np.array([2, 3, 1, 3])


def test_ranking_fixture_at_k3() -> None:
    m = precision_recall_f1_ndcg_at_k(REC, RELEVANT, N_BEFORE)
    # hits per user: [0,1,0] [1,1,1] [0,0,0] [0,1,1]
    assert_allclose(m["precision@3"], (1 / 3 + 1 + 0 + 2 / 3) / 4)
    assert_allclose(m["recall@3"], (1 / 2 + 1 + 0 + 2 / 3) / 4)  # = 13/24, user 3 over 3 not 2
    assert_allclose(m["f1@3"], 13 / 25)
    assert_allclose(m["hit@3"], 0.75)
    ndcg = [D1 / (1 + D1), 1.0, 0.0, (D1 + 0.5) / (1 + D1 + 0.5)]
    assert_allclose(m["ndcg@3"], np.mean(ndcg))


def test_ranking_fixture_at_k1_and_boolean_matrix() -> None:
    rel = np.zeros((4, 6), dtype=bool)
    for u, items in enumerate(RELEVANT):
        rel[u, list(items)] = True
    m = precision_recall_f1_ndcg_at_k(REC, rel, N_BEFORE, k=1)
    assert_allclose([m["precision@1"], m["recall@1"], m["ndcg@1"], m["hit@1"]], [0.25, 1 / 12, 0.25, 0.25])
    m3 = precision_recall_f1_ndcg_at_k(REC, rel, N_BEFORE)
    assert m3 == pytest.approx(precision_recall_f1_ndcg_at_k(REC, RELEVANT, N_BEFORE))


def test_ranking_duplicates_pay_once_and_default_denominator() -> None:
    m = precision_recall_f1_ndcg_at_k(np.array([[1, 1, -1]]), [{1, 2}])
    assert_allclose([m["precision@3"], m["recall@3"]], [1 / 3, 1 / 2])
    with pytest.raises(ValueError, match="k must be in"):
        precision_recall_f1_ndcg_at_k(REC, RELEVANT, k=4)


def test_exposure_gini_popularity_fixture() -> None:
    counts = exposure_counts(REC, n_items=6)
    assert counts.tolist() == [3, 2, 2, 2, 1, 2]
    assert_allclose(gini_index(counts), 10 / 72)  # sorted [1,2,2,2,2,3], weights -5..5 step 2
    is_pop = np.array([True, False, False, False, False, True])
    assert_allclose(popularity_rate(REC, is_pop), 5 / 12)


def test_gini_closed_forms() -> None:
    assert gini_index(np.full(7, 4)) == pytest.approx(0.0, abs=1e-12)
    n = 10
    assert_allclose(gini_index(np.eye(n)[0] * 5), (n - 1) / n)
    assert gini_index(np.zeros(5)) == 0.0
    # never-shown items count: same shown counts over more items is less equal
    assert gini_index([1, 1, 0, 0]) > gini_index([1, 1])
    with pytest.raises(ValueError, match="must be >= 0"):
        gini_index([1, -1])


@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(1, 5))
@settings(max_examples=60, deadline=None)
def test_gini_properties(xs: list[int], scale: int) -> None:
    x = np.array(xs)
    g = gini_index(x)
    assert -1e-12 <= g <= (x.size - 1) / x.size + 1e-12
    assert_allclose(gini_index(scale * x), g, atol=1e-12)
    assert_allclose(gini_index(x[::-1]), g, atol=1e-12)


def test_single_target_hit_and_ndcg() -> None:
    ranks = np.array([0, 1, 4, -1, 25])
    assert_allclose(hit_at_k(ranks, 1), 1 / 5)
    assert_allclose(hit_at_k(ranks, 5), 3 / 5)
    assert_allclose(ndcg_at_k(ranks, 5), (1 + D1 + 1 / math.log2(6)) / 5)
    assert_allclose(ndcg_at_k(ranks, 1), 1 / 5)


@given(st.lists(st.integers(-1, 30), min_size=1, max_size=30), st.integers(1, 20))
@settings(max_examples=60, deadline=None)
def test_single_target_properties(ranks: list[int], k: int) -> None:
    h, n = hit_at_k(ranks, k), ndcg_at_k(ranks, k)
    assert 0 <= n <= h <= 1
    assert hit_at_k(ranks, k + 1) >= h


def test_violation_rate() -> None:
    assert_allclose(violation_rate([1.0, 2.0, 3.0, 2.0], limit=2.0), 0.25)


def test_roc_auc_on_hand_counted_pairs() -> None:
    # binary: AUC = P(score of a positive > score of a negative), ties count 1/2.
    # positives {0.35, 0.8, 0.4} vs negatives {0.1, 0.4}: 1 + 0 + 2 + 1 + 0.5 = 4.5 of 6 pairs
    y = np.array([0, 0, 1, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    assert_allclose(roc_auc(y, s)["auc"], 4.5 / 6)
    assert_allclose(roc_auc(y, np.stack([1 - s, s], 1))["auc"], 4.5 / 6)
    # 3 classes, 2 users each. One-vs-one (Hand & Till): per pair (j, k), the mean of A(j|k) and
    # A(k|j), A(j|k) = share of (j-user, k-user) pairs where the j-user's p_j is higher:
    # (0,1): 3/4 and 3/4; (0,2): 2.5/4 and 4/4; (1,2): 4/4 and 4/4.
    y3 = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.4, 0.3],
                  [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4]])  # fmt: skip
    out = roc_auc(y3, p)
    assert_allclose(out["auc_ovo"], (0.75 + (0.625 + 1.0) / 2 + 1.0) / 3)
    # one-vs-rest: class 0 -> 5.5/8 (one tie), class 1 -> 7/8, class 2 -> 8/8
    assert_allclose(out["auc_ovr"], (5.5 / 8 + 7 / 8 + 1.0) / 3)
    assert out["auc"] == out["auc_ovo"]
    with pytest.raises(ValueError, match="apply softmax"):
        roc_auc(y3, np.log(p))  # logits, not probabilities


def test_pareto_front_hand_example() -> None:
    # columns: hit (max), gini (min)
    pts = np.array([[0.5, 0.3], [0.6, 0.4], [0.4, 0.2], [0.45, 0.35], [0.6, 0.4], [0.3, 0.5], [np.nan, 0.0]])
    mask = pareto_front(pts, maximize=[True, False])
    assert mask.tolist() == [True, True, True, False, True, False, False]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=25))
@settings(max_examples=60, deadline=None)
def test_pareto_front_properties(rows: list[tuple[int, int]]) -> None:
    pts = np.array(rows, dtype=float)
    mask = pareto_front(pts, maximize=[True, True])
    assert mask.any()

    def dominates(a: np.ndarray, b: np.ndarray) -> bool:
        return bool((a >= b).all() and (a > b).any())

    for i in range(len(pts)):
        dominated = any(dominates(pts[j], pts[i]) for j in range(len(pts)))
        assert mask[i] == (not dominated)


def test_registry_directions() -> None:
    assert metric_mode("hit@10") == "max"
    assert metric_mode("recall@10") == "max"
    assert metric_mode("ndcg@5") == "max"
    assert metric_mode("auc") == "min"
    assert metric_mode("gini") == "min"
    assert metric_mode("cost") == "min"
    assert metric_mode("eval/popularity_rate") == "min"
    assert metric_spec("f1@20") is METRICS["f1"]
    with pytest.raises(KeyError, match="unknown metric 'hitrate@10'"):
        metric_mode("hitrate@10")

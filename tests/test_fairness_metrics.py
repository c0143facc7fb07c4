"""Hand-computed cases of the outcome and exposure fairness metrics (metrics.py, outcomes.py):
ties, empty groups, an item nobody sees, a group with one user."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fairrec_ray.metrics import (
    average_popularity,
    differential_fairness,
    exposure_metrics,
    gini_index,
    group_gap,
    long_tail_share,
    popular_exposure,
    rank_weighted_exposure,
    top_k_indicator,
    yao_huang,
)
from fairrec_ray.outcomes import group_outcomes, per_user_hit_ndcg, ranking_outcomes

D1 = 1 / math.log2(3)  # weight of rank 2

# 3 users x 2 items; group 0 = users 0, 1; group 1 = user 2 alone.
Y = np.array([[1, 0], [1, 0], [0, 1]])
R = np.array([[1, 0], [0, 1], [0, 0]])
G = np.array([0, 0, 1])


def test_group_gap_three_groups_one_singleton() -> None:
    out = group_gap([1, 0, 1, 0.5, 0.0], [0, 0, 1, 2, 2])
    # means 0.5, 1.0, 0.25: pairs |0.5-1| |0.5-0.25| |1-0.25|
    assert_allclose(out["gap"], (0.5 + 0.25 + 0.75) / 3)
    assert_allclose(out["max_gap"], 0.75)
    assert out["per_group"] == {"0": 0.5, "1": 1.0, "2": 0.25}
    assert out["n_per_group"] == {"0": 2, "1": 1, "2": 2}


def test_group_gap_empty_groups_skipped_and_single_group_zero() -> None:
    # labels 0 and 3 occur, 1 and 2 are empty: a two-group gap
    assert_allclose(group_gap([1, 0, 0, 0], [0, 0, 3, 3])["gap"], 0.5)
    assert group_gap([1, 0, 1], [4, 4, 4])["gap"] == 0.0
    with pytest.raises(ValueError, match="one label per user"):
        group_gap([1, 0], [0])


def test_yao_huang_two_groups() -> None:
    # d_0 = E0[y] - E0[r] = [1, 0] - [.5, .5] = [.5, -.5];  d_1 = [0, 1] - [0, 0] = [0, 1]
    out = yao_huang(Y, R, G)
    assert_allclose(out["value"], (0.5 + 1.5) / 2)
    assert_allclose(out["absolute"], (0.5 + 0.5) / 2)
    assert_allclose(out["under"], (0 + 0.5) / 2)
    assert_allclose(out["over"], (0.5 + 1.0) / 2)
    assert out["non_parity"] == 0.0  # one recommendation per user: zero by construction


def test_yao_huang_three_groups_is_mean_over_pairs() -> None:
    y = np.vstack([Y, [0, 0]])  # user 3 in group 2 gets nothing, d_2 = [0, 0] - [1, 0] = [-1, 0]
    r = np.vstack([R, [1, 0]])
    out = yao_huang(y, r, [0, 0, 1, 2])
    # value per pair: (0,1) 1.0; (0,2) mean(|.5+1|, |-.5-0|) = 1.0; (1,2) mean(|0+1|, |1-0|) = 1.0
    assert_allclose(out["value"], 1.0)
    # under: max(0,-d) = [0,.5], [0,0], [1,0] -> pairs .25, mean(1, .5)=.75, .5
    assert_allclose(out["under"], (0.25 + 0.75 + 0.5) / 3)
    # mean predictions .5, .5, 0
    assert_allclose(out["non_parity"], (0 + 0.5 + 0.5) / 3)
    assert yao_huang(Y, R, [0, 0, 0]) == dict.fromkeys(("value", "absolute", "under", "over", "non_parity"), 0.0)


def test_differential_fairness_hand_case_and_unseen_item() -> None:
    # alpha 1: p_0 = [(2+1)/4, (0+1)/4] = [.75, .25]; p_1 = [(0+1)/3, (1+1)/3] = [1/3, 2/3]
    eps = differential_fairness(Y, G)
    assert_allclose(eps, math.log(8 / 3))  # item 1: |log .25 - log 2/3|
    # an item nobody sees: p = 1/4 vs 1/3 -> log(4/3) < log(8/3); the max is unchanged
    y3 = np.hstack([Y, np.zeros((3, 1))])
    assert_allclose(differential_fairness(y3, G), math.log(8 / 3))
    # equal outcomes in equal-sized groups: 0
    assert differential_fairness(np.array([[1, 0], [1, 0]]), [0, 1]) == 0.0
    assert differential_fairness(Y, [5, 5, 5]) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        differential_fairness(Y, G, alpha=0)


REC = np.array([[0, 1, -1], [1, 2, 0]])  # item 3 nobody sees; user 0 has an empty slot
POPULAR = np.array([True, True, False, False])
PHI = np.array([10, 5, 1, 0])


def test_rank_weighted_exposure_and_gini_over_all_items() -> None:
    e = rank_weighted_exposure(REC, 4)
    assert_allclose(e, [1 + 0.5, D1 + 1, D1, 0.0])  # rank 3 weight 1/log2(4) = .5
    x = np.sort(e)
    assert_allclose(gini_index(e), sum((2 * i - 5) * v for i, v in enumerate(x, 1)) / (4 * e.sum()))
    assert gini_index(rank_weighted_exposure(REC, 3)) < gini_index(e)  # the unseen item counts


def test_popular_exposure_share_ratio_ties_and_edges() -> None:
    e = rank_weighted_exposure(REC, 4)
    out = popular_exposure(e, POPULAR)
    assert_allclose(out["share"], (2.5 + D1) / (2.5 + 2 * D1))
    assert_allclose(out["ratio"], ((2.5 + D1) / 2) / (D1 / 2))
    tie = popular_exposure(np.array([1.0, 1.0, 1.0, 1.0]), POPULAR)
    assert tie == {"share": 0.5, "ratio": 1.0} and gini_index([1.0, 1.0, 1.0, 1.0]) == 0.0
    assert popular_exposure(np.array([1.0, 0, 0, 0]), POPULAR)["ratio"] == math.inf
    assert math.isnan(popular_exposure(e, np.ones(4, bool))["ratio"])
    assert popular_exposure(np.zeros(4), POPULAR)["share"] == 0.0


def test_arp_and_aplt_skip_empty_slots() -> None:
    assert_allclose(average_popularity(REC, PHI), ((10 + 5) / 2 + (5 + 1 + 10) / 3) / 2)
    assert_allclose(long_tail_share(REC, POPULAR), (0 / 2 + 1 / 3) / 2)
    assert average_popularity(np.full((2, 2), -1), PHI) == 0.0
    m = exposure_metrics(REC, 4, PHI, POPULAR)
    assert_allclose(m["item_coverage"], 0.75)
    assert_allclose(m["aplt"], 1 / 6)


def test_top_k_indicator_and_per_user_hit_ndcg() -> None:
    ind = top_k_indicator(REC, 4, k=2)
    assert ind.tolist() == [[True, True, False, False], [False, True, True, False]]
    hit, ndcg = per_user_hit_ndcg(np.array([[3, 1, 2], [0, 1, 2], [1, 1, 1]]), np.array([1, 5, 1]), k=2)
    assert hit.tolist() == [1.0, 0.0, 1.0]
    assert_allclose(ndcg, [D1, 0.0, 1.0])  # a repeated item: its first position counts


def test_group_outcomes_end_to_end() -> None:
    items = np.array([[0, 1], [1, 0], [2, 3]])  # top-2 lists of 3 users over 4 items
    golds = np.array([0, 3, 2])
    out = group_outcomes(items, golds, np.array([0, 0, 1]), n_items=4, k=2)
    # hit: 1, 0, 1 -> group means .5 and 1; ndcg: 1, 0, 1 -> .5 and 1
    assert_allclose([out["gap_hit@2"], out["gap_ndcg@2"]], [0.5, 0.5])
    assert out["hit@2_group_1"] == 1.0 and out["yh_parity"] == 0.0
    both = ranking_outcomes(items, golds, {"a": np.array([0, 0, 1]), "b": np.array([1, 1, 1])}, 4, PHI, k=2)
    assert both["a/gap_hit@2"] == 0.5 and both["b/gap_hit@2"] == 0.0
    assert_allclose(both["item_coverage"], 1.0)

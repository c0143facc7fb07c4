"""The fairness probe on synthetic features of known separability (pure sklearn, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from fairrec_ray.cfp.probe import bootstrap_auc_ci, leak, oversample_balanced, probe_auc, rank_auc


def features(n: int, classes: int, shift: float, dim: int = 8, seed: int = 0, p=None):
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, size=n, p=p)
    centers = rng.normal(size=(classes, dim))
    return rng.normal(size=(n, dim)) + shift * centers[y], y


def test_separable_binary_features_give_high_auc():
    x, y = features(300, 2, shift=3.0, p=[0.3, 0.7])
    result = probe_auc(x, y, folds=3)
    assert result.auc > 0.95 and result.auc_ovr is None
    assert set(result.per_probe) == {"logreg", "mlp"}


def test_independent_features_give_chance_auc():
    x, y = features(400, 2, shift=0.0, p=[0.3, 0.7])
    assert 0.4 < probe_auc(x, y, folds=5).auc < 0.6


def test_weak_signal_lands_in_between():
    x, y = features(600, 2, shift=0.4, seed=3)
    assert 0.6 < probe_auc(x, y, folds=5).auc < 0.95


def test_multiclass_reports_ovo_and_ovr_and_drops_too_rare_classes():
    x, y = features(350, 4, shift=2.0, seed=1)
    y[:2] = 9  # a class with 2 users cannot appear in every fold
    result = probe_auc(x, y, folds=5)
    assert result.n_classes == 4 and result.n_users == 348
    assert result.auc > 0.85 and result.auc_ovr is not None and result.auc_ovr > 0.85
    d = result.as_dict()
    assert {"probe_auc", "probe_auc_ovr", "probe_logreg_auc_ovo", "probe_mlp_auc_ovr"} <= set(d)


def test_single_split_mode_and_determinism():
    x, y = features(200, 2, shift=1.0, seed=2)
    a = probe_auc(x, y, folds=1, test_share=0.25, seed=4)
    b = probe_auc(x, y, folds=1, test_share=0.25, seed=4)
    assert a.auc == b.auc


def test_oversampling_balances_classes():
    x = np.arange(10, dtype=float)[:, None]
    y = np.array([0] * 8 + [1] * 2)
    _, yb = oversample_balanced(x, y, np.random.default_rng(0))
    assert np.bincount(yb).tolist() == [8, 8]


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="two classes"):
        probe_auc(np.zeros((10, 2)), np.zeros(10, int))
    with pytest.raises(ValueError, match="features must be"):
        probe_auc(np.zeros((10, 2)), np.zeros(9, int))


def test_leak_counts_an_inverted_probe_as_a_leak():
    assert leak(0.2) == pytest.approx(0.8) and leak(0.7) == pytest.approx(0.7) and leak(0.5) == 0.5


def test_bootstrap_interval_hand_cases():
    labels = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.3, 0.7], [0.2, 0.8], [0.1, 0.9]])
    assert bootstrap_auc_ci(labels, perfect, n_boot=50) == (1.0, 1.0)  # every resample ranks perfectly
    assert bootstrap_auc_ci(labels, perfect[:, ::-1], n_boot=50) == (0.0, 0.0)  # inverted: AUC 0, a full leak
    rng = np.random.default_rng(0)
    small_y, big_y = rng.integers(0, 2, 60), rng.integers(0, 2, 2000)
    small = bootstrap_auc_ci(small_y, rng.random((60, 2)), n_boot=200)
    big = bootstrap_auc_ci(big_y, rng.random((2000, 2)), n_boot=200)
    assert small[0] < 0.5 < small[1] and big[0] < 0.5 < big[1]  # noise: chance is inside
    assert big[1] - big[0] < 0.5 * (small[1] - small[0])  # ~1/sqrt(n): 33x the users, ~1/6 the width


def test_probe_reports_an_interval_over_the_probed_users():
    x, y = features(300, 2, shift=0.6, seed=5)
    result = probe_auc(x, y, folds=3, seed=1, probes=("logreg",))
    low, high = result.auc_ci
    assert low < result.auc < high and high - low < 0.25
    assert result.as_dict()["probe_n_users"] == 300 and result.as_dict()["probe_leak"] == result.leak
    fewer = probe_auc(x[:80], y[:80], folds=3, seed=1, probes=("logreg",))
    assert fewer.n_users == 80 and fewer.auc_ci[1] - fewer.auc_ci[0] > high - low


@pytest.mark.parametrize("classes", [2, 4])
def test_rank_auc_matches_sklearn(classes):
    from fairrec_ray.metrics import roc_auc

    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 300)
    proba = rng.dirichlet(np.ones(classes), 300) + 0.3 * np.eye(classes)[y]
    proba = proba / proba.sum(1, keepdims=True)
    proba[:5] = proba[0]  # ties
    assert rank_auc(y, proba) == pytest.approx(roc_auc(y, proba)["auc"], abs=1e-9)

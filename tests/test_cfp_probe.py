"""The fairness probe on synthetic features of known separability (pure sklearn, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from fairrec_ray.cfp.probe import oversample_balanced, probe_auc


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

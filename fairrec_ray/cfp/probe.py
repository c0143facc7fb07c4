"""Fairness probe (the paper's AUC): how well a *fresh* classifier recovers a sensitive attribute
from frozen user representations. Pure numpy/sklearn; no Ray, no torch.

Protocol: users are split into stratified folds (``folds`` >= 2: K-fold cross-validation, every user
held out once; ``folds == 1``: one stratified split with ``test_share`` held out). On each training
part the classes are balanced (logistic regression: ``class_weight="balanced"``; the MLP, which has
no class weights: minority classes oversampled with replacement), features are standardised with
training statistics, and each probe predicts probabilities for the held-out users. AUC per probe is
the mean over folds of ``fairrec_ray.metrics.roc_auc`` (binary ROC-AUC; multi-class macro one-vs-one,
with macro one-vs-rest beside it). The reported AUC is the **max over probes**: a weak probe
flatters the method. 0.5 = nothing leaks; an AUC well below 0.5 leaks too (the probe's ranking is
inverted), so ``leak = max(auc, 1 − auc)`` is reported beside it.

Uncertainty: every user's out-of-fold prediction of the best probe is pooled and the users are
resampled with replacement (``bootstrap_auc_ci``); the 2.5 / 97.5 % percentiles of the resampled
AUCs are the 95 % interval (over the probed users only — whoever the caller passes).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from fairrec_ray.metrics import roc_auc

PROBES = ("logreg", "mlp")


@dataclass
class ProbeResult:
    auc: float  # max over probes; binary ROC-AUC, multi-class macro OvO
    auc_ovr: float | None  # multi-class only: max over probes of macro OvR
    per_probe: dict[str, dict[str, float]] = field(default_factory=dict)
    n_users: int = 0
    n_classes: int = 0
    auc_ci: tuple[float, float] | None = None  # 95 % bootstrap interval over users (best probe)

    @property
    def leak(self) -> float:
        return leak(self.auc)

    def as_dict(self, prefix: str = "probe_") -> dict[str, float]:
        out = {f"{prefix}auc": self.auc, f"{prefix}leak": self.leak, f"{prefix}n_users": float(self.n_users)}
        if self.auc_ci is not None:
            out[f"{prefix}auc_ci_low"], out[f"{prefix}auc_ci_high"] = self.auc_ci
        if self.auc_ovr is not None:
            out[f"{prefix}auc_ovr"] = self.auc_ovr
        for name, values in self.per_probe.items():
            out.update({f"{prefix}{name}_{k}": v for k, v in values.items()})
        return out


def leak(auc: float) -> float:
    """``max(auc, 1 − auc)``: how far from chance, in either direction (0.5: nothing leaks)."""
    return max(auc, 1.0 - auc)


def rank_auc(labels: np.ndarray, proba: np.ndarray) -> float:
    """AUC as ``_fold_auc`` scores it, fast enough to bootstrap: binary — the Mann–Whitney
    statistic of the positive class's normalised probability (ties count half); multi-class — Hand
    & Till's macro one-vs-one: for every class pair (a, b), among their users, the mean of the AUC of
    column a for a-vs-b and of column b for b-vs-a, averaged over pairs present in ``labels``."""
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError("rank_auc needs at least two classes among the users")
    if proba.shape[1] == 2:
        return _mann_whitney(labels == 1, proba[:, 1] / proba.sum(1).clip(1e-12))
    pairs = []
    for i, a in enumerate(present):
        for b in present[i + 1 :]:
            rows = (labels == a) | (labels == b)
            p = proba[rows] / proba[rows].sum(1, keepdims=True).clip(1e-12)
            pairs.append((_mann_whitney(labels[rows] == a, p[:, a]) + _mann_whitney(labels[rows] == b, p[:, b])) / 2)
    return float(np.mean(pairs))


def _mann_whitney(positive: np.ndarray, score: np.ndarray) -> float:
    ranks = rankdata(score)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_auc_ci(
    labels: np.ndarray, proba: np.ndarray, *, n_boot: int = 500, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the AUC of ``proba`` [n, n_classes] for ``labels`` (0..n_classes-1)
    when the n users are resampled with replacement ``n_boot`` times; a resample that lacks a
    class is scored on the classes it has (``rank_auc``), one with a single class is skipped."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(labels), len(labels))
        if len(np.unique(labels[rows])) < 2:
            continue
        values.append(rank_auc(labels[rows], proba[rows]))
    if not values:
        raise ValueError("bootstrap_auc_ci: every resample held a single class")
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def oversample_balanced(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resample every class to the majority class's count (with replacement)."""
    classes, counts = np.unique(y, return_counts=True)
    rows = [rng.choice(np.flatnonzero(y == c), size=counts.max(), replace=True) for c in classes]
    index = rng.permutation(np.concatenate(rows))
    return x[index], y[index]


def _fit_predict(name: str, x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "logreg":
        model = LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced")
    elif name == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=300, random_state=seed)
        x_tr, y_tr = oversample_balanced(x_tr, y_tr, rng)
    else:
        raise ValueError(f"unknown probe {name!r}; expected one of {PROBES}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_tr, y_tr)
    return model.predict_proba(x_te)


def _fold_auc(proba: np.ndarray, train_classes: np.ndarray, y_te: np.ndarray) -> dict[str, float]:
    """AUC over the classes seen in both parts (a class absent from the test part has no AUC)."""
    keep_rows = np.isin(y_te, train_classes)
    present = np.intersect1d(train_classes, np.unique(y_te[keep_rows]))
    cols = np.searchsorted(train_classes, present)
    scores = proba[keep_rows][:, cols]
    labels = np.searchsorted(present, y_te[keep_rows])
    if len(present) == 2:
        return roc_auc(labels, scores[:, 1] / scores.sum(1).clip(1e-12))
    return roc_auc(labels, scores / scores.sum(1, keepdims=True).clip(1e-12))


def _splits(y: np.ndarray, folds: int, test_share: float, seed: int):
    if folds >= 2:
        yield from StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        return
    index = np.arange(len(y))
    yield train_test_split(index, test_size=test_share, random_state=seed, stratify=y)


def probe_auc(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    folds: int = 5,
    test_share: float = 0.2,
    seed: int = 0,
    probes: tuple[str, ...] = PROBES,
    n_boot: int = 500,
) -> ProbeResult:
    """Probe AUC of ``labels`` (int classes) from ``features`` [n_users, d]; see the module doc."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be [n, d] with n = len(labels); got {x.shape} and {y.shape}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError("probe needs at least two classes among the users")
    # Classes too rare to appear in every fold would make fold AUCs incomparable: drop them.
    need = max(folds, 2)
    keep = np.isin(y, classes[counts >= need])
    x, y = x[keep], y[keep]
    folds = min(folds, int(np.unique(y, return_counts=True)[1].min())) if folds >= 2 else folds
    classes = np.unique(y)
    y = np.searchsorted(classes, y)  # 0..k-1, the probability columns (every class is in every training part)
    per_probe: dict[str, dict[str, list[float]]] = {name: {} for name in probes}
    out_of_fold = {name: np.full((len(y), len(classes)), np.nan) for name in probes}
    for fold, (tr, te) in enumerate(_splits(y, folds, test_share, seed)):
        scaler = StandardScaler().fit(x[tr])
        x_tr, x_te = scaler.transform(x[tr]), scaler.transform(x[te])
        for name in probes:
            proba = _fit_predict(name, x_tr, y[tr], x_te, seed + fold)
            for key, value in _fold_auc(proba, np.unique(y[tr]), y[te]).items():
                per_probe[name].setdefault(key, []).append(value)
            if proba.shape[1] == len(classes):
                out_of_fold[name][te] = proba
    mean = {name: {k: float(np.mean(v)) for k, v in values.items()} for name, values in per_probe.items()}
    best = max(mean, key=lambda name: mean[name]["auc"])
    ovr = [values["auc_ovr"] for values in mean.values() if "auc_ovr" in values]
    scored = ~np.isnan(out_of_fold[best]).any(1)
    ci = None
    if n_boot > 0 and len(np.unique(y[scored])) >= 2:
        ci = bootstrap_auc_ci(y[scored], out_of_fold[best][scored], n_boot=n_boot, seed=seed)
    return ProbeResult(mean[best]["auc"], max(ovr) if ovr else None, mean, len(y), len(classes), ci)

"""Fairness probe (the paper's AUC): how well a *fresh* classifier recovers a sensitive attribute
from frozen user representations. Pure numpy/sklearn; no Ray, no torch.

Protocol: users are split into stratified folds (``folds`` >= 2: K-fold cross-validation, every user
held out once; ``folds == 1``: one stratified split with ``test_share`` held out). On each training
part the classes are balanced (logistic regression: ``class_weight="balanced"``; the MLP, which has
no class weights: minority classes oversampled with replacement), features are standardised with
training statistics, and each probe predicts probabilities for the held-out users. AUC per probe is
the mean over folds of ``fairrec_ray.metrics.roc_auc`` (binary ROC-AUC; multi-class macro one-vs-one,
with macro one-vs-rest beside it). The reported AUC is the **max over probes**: a weak probe
flatters the method. 0.5 = nothing leaks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
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

    def as_dict(self, prefix: str = "probe_") -> dict[str, float]:
        out = {f"{prefix}auc": self.auc}
        if self.auc_ovr is not None:
            out[f"{prefix}auc_ovr"] = self.auc_ovr
        for name, values in self.per_probe.items():
            out.update({f"{prefix}{name}_{k}": v for k, v in values.items()})
        return out


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
    per_probe: dict[str, dict[str, list[float]]] = {name: {} for name in probes}
    for fold, (tr, te) in enumerate(_splits(y, folds, test_share, seed)):
        scaler = StandardScaler().fit(x[tr])
        x_tr, x_te = scaler.transform(x[tr]), scaler.transform(x[te])
        for name in probes:
            proba = _fit_predict(name, x_tr, y[tr], x_te, seed + fold)
            for key, value in _fold_auc(proba, np.unique(y[tr]), y[te]).items():
                per_probe[name].setdefault(key, []).append(value)
    mean = {name: {k: float(np.mean(v)) for k, v in values.items()} for name, values in per_probe.items()}
    auc = max(values["auc"] for values in mean.values())
    ovr = [values["auc_ovr"] for values in mean.values() if "auc_ovr" in values]
    return ProbeResult(auc, max(ovr) if ovr else None, mean, len(y), len(np.unique(y)))

"""Ranking, fairness and trade-off metrics shared by P5/CFP evaluation, FCPO and the sweeps.

Pure numpy (sklearn for AUC). Every metric declares its direction in :data:`METRICS`, so Tune's
``mode=`` is derived with :func:`metric_mode` instead of being retyped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = [
    "METRICS",
    "MetricSpec",
    "exposure_counts",
    "gini_index",
    "hit_at_k",
    "metric_mode",
    "metric_spec",
    "ndcg_at_k",
    "pareto_front",
    "popularity_rate",
    "precision_recall_f1_ndcg_at_k",
    "roc_auc",
    "violation_rate",
]


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, direction and meaning."""

    name: str
    higher_is_better: bool
    description: str

    @property
    def mode(self) -> Literal["max", "min"]:
        """Ray Tune's ``mode`` for this metric."""
        return "max" if self.higher_is_better else "min"


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("hit", True, "share of users whose gold/held-out item is in the top k"),
        MetricSpec("ndcg", True, "normalised discounted cumulative gain of the top k, binary gains"),
        MetricSpec("precision", True, "hits in the top k divided by k"),
        MetricSpec("recall", True, "hits in the top k divided by held-out positives before the rollout"),
        MetricSpec("f1", True, "harmonic mean of mean precision and mean recall"),
        MetricSpec("reward", True, "mean episode reward (FCPO: recommended held-out positives)"),
        MetricSpec("gini", False, "Gini index of item exposure over all items (0 = equal exposure)"),
        MetricSpec("popularity_rate", False, "share of recommended slots taken by popular items"),
        MetricSpec("cost", False, "mean episode cost (FCPO: recommended items of the popular group)"),
        MetricSpec("violation_rate", False, "share of episodes whose cost exceeds the limit d"),
        MetricSpec("auc", False, "probe ROC-AUC of a sensitive attribute (0.5 = no leak)"),
        MetricSpec("auc_ovo", False, "probe ROC-AUC, multi-class macro one-vs-one"),
        MetricSpec("auc_ovr", False, "probe ROC-AUC, multi-class macro one-vs-rest"),
        MetricSpec("probe_auc", False, "CFP: max probe ROC-AUC over LR and MLP probes (OvO when multi-class)"),
        MetricSpec("probe_auc_ovr", False, "CFP: max probe ROC-AUC, multi-class macro one-vs-rest"),
        MetricSpec("probe_leak", False, "CFP: max(probe AUC, 1 - probe AUC) (an inverted probe leaks too)"),
        MetricSpec("encoder_probe_auc", False, "CFP: probe ROC-AUC on the mean of all encoder states"),
        MetricSpec("encoder_probe_leak", False, "CFP: max(AUC, 1 - AUC) of the all-encoder-states probe"),
    )
}

# The leave-one-out ranking metrics (P5, CFP, baselines): ``rank_metrics`` in ``p5/evaluate.py``.
HIT_KS = (1, 3, 5, 10)
NDCG_KS = (5, 10)
RANKING_KEYS = tuple(f"hit@{k}" for k in HIT_KS) + tuple(f"ndcg@{k}" for k in NDCG_KS)

_AT_K = re.compile(r"^(?P<base>[a-z_][a-z0-9_]*)(@\d+)?$")


def metric_spec(name: str) -> MetricSpec:
    """Spec of ``name``; a ``@k`` suffix is ignored (``"recall@10"`` -> ``recall``), as is a
    ``prefix/`` path (``"eval/gini"`` -> ``gini``)."""
    leaf = name.rsplit("/", 1)[-1]
    match = _AT_K.match(leaf)
    base = match.group("base") if match else leaf
    if base not in METRICS:
        raise KeyError(f"unknown metric {name!r}: expected one of {sorted(METRICS)}, optionally with @k")
    return METRICS[base]


def metric_mode(name: str) -> Literal["max", "min"]:
    """``"max"`` or ``"min"`` for Tune, e.g. ``metric_mode("hit@10") == "max"``."""
    return metric_spec(name).mode


# ---------------------------------------------------------------- single-target ranking


def hit_at_k(ranks: np.ndarray | Sequence[int], k: int) -> float:
    """Mean of ``1[0 <= rank < k]``; ``ranks`` are 0-based positions of the gold item, -1 (or any
    value >= k) when it was not ranked."""
    r = np.asarray(ranks)
    return float(np.mean((r >= 0) & (r < k))) if r.size else 0.0


def ndcg_at_k(ranks: np.ndarray | Sequence[int], k: int) -> float:
    """Mean of ``1 / log2(rank + 2)`` if ``0 <= rank < k`` else 0 (one relevant item: IDCG = 1)."""
    r = np.asarray(ranks, dtype=np.float64)
    if not r.size:
        return 0.0
    hit = (r >= 0) & (r < k)
    return float(np.mean(np.where(hit, 1.0 / np.log2(np.where(hit, r, 0.0) + 2.0), 0.0)))


# ---------------------------------------------------------------- set-based ranking (FCPO)


def _hit_matrix(recommended: np.ndarray, relevant: Sequence[Set[int]] | np.ndarray) -> np.ndarray:
    """``hits[u, j] = 1`` if ``recommended[u, j]`` is relevant to u and not an earlier duplicate."""
    n_users, k = recommended.shape
    if isinstance(relevant, np.ndarray):
        rel = relevant.astype(bool)
        if rel.shape[0] != n_users or (recommended >= rel.shape[1]).any():
            raise ValueError(
                f"relevant matrix {rel.shape} must be [n_users={n_users}, n_items > every recommended id "
                f"(max {recommended.max(initial=-1)})]"
            )
        valid = recommended >= 0
        hits = np.zeros((n_users, k), dtype=bool)
        rows = np.nonzero(valid)
        hits[rows] = rel[rows[0], recommended[rows]]
    else:
        if len(relevant) != n_users:
            raise ValueError(f"relevant has {len(relevant)} users, recommended has {n_users}")
        hits = np.array(
            [[int(i) in rel_u for i in row] for row, rel_u in zip(recommended, relevant, strict=True)], dtype=bool
        )
        hits = hits.reshape(n_users, k)
    # a repeated item pays once: keep only its first occurrence
    for j in range(1, k):
        dup = (recommended[:, :j] == recommended[:, j : j + 1]).any(axis=1)
        hits[:, j] &= ~dup
    return hits


def precision_recall_f1_ndcg_at_k(
    recommended: np.ndarray,
    relevant: Sequence[Set[int]] | np.ndarray,
    n_relevant_before: np.ndarray | Sequence[int] | None = None,
    k: int | None = None,
) -> dict[str, float]:
    """Top-k metrics of ordered recommendation lists against per-user relevant sets.

    ``recommended``: int [n_users, K] item ids in order (-1 = empty slot); ``relevant``: one set
    per user or a boolean [n_users, n_items] matrix; ``n_relevant_before``: each user's held-out
    positives counted *before* the rollout (default: the sizes of ``relevant``); ``k`` defaults
    to K. With ``h_u`` the hits in the first k (a repeated item counts once) and ``n_u`` the
    held-out count:

    * precision@k = mean_u h_u / k;  recall@k = mean_u h_u / n_u (0 for n_u = 0);
    * f1@k = 2 P R / (P + R) of those means;  hit@k = mean_u 1[h_u > 0];
    * ndcg@k = mean_u DCG_u / IDCG_u, ``DCG = sum_{j<k} hit_j / log2(j + 2)``,
      ``IDCG = sum_{j < min(k, n_u)} 1 / log2(j + 2)`` (0 for n_u = 0).

    Returns keys ``precision@k``, ``recall@k``, ``f1@k``, ``ndcg@k``, ``hit@k`` (k as a number).
    """
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be an int array [n_users, K] (got shape {rec.shape})")
    k = rec.shape[1] if k is None else k
    if not 1 <= k <= rec.shape[1]:
        raise ValueError(f"k must be in [1, {rec.shape[1]}] for {rec.shape[1]} recommendations per user (got {k})")
    rec = rec[:, :k]
    hits = _hit_matrix(rec, relevant)
    if n_relevant_before is None:
        n_rel = relevant.sum(axis=1) if isinstance(relevant, np.ndarray) else np.array([len(s) for s in relevant])
    else:
        n_rel = np.asarray(n_relevant_before)
    if n_rel.shape != (rec.shape[0],):
        raise ValueError(f"n_relevant_before must have one count per user ({rec.shape[0]}), got shape {n_rel.shape}")
    n_rel = n_rel.astype(np.float64)
    h = hits.sum(axis=1).astype(np.float64)
    safe = np.maximum(n_rel, 1.0)
    precision = float(np.mean(h / k))
    recall = float(np.mean(np.where(n_rel > 0, h / safe, 0.0)))
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = hits @ discounts
    idcg = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_rel, k).astype(int)]
    ndcg = float(np.mean(np.where(idcg > 0, dcg / np.maximum(idcg, 1e-300), 0.0)))
    return {
        f"precision@{k}": precision,
        f"recall@{k}": recall,
        f"f1@{k}": f1,
        f"ndcg@{k}": ndcg,
        f"hit@{k}": float(np.mean(h > 0)),
    }


# ---------------------------------------------------------------- exposure fairness


def exposure_counts(recommended: np.ndarray, n_items: int) -> np.ndarray:
    """Times each of ``n_items`` items was recommended (negative ids = empty slots, ignored)."""
    ids = np.asarray(recommended).ravel()
    return np.bincount(ids[ids >= 0], minlength=n_items)[:n_items] if ids.size else np.zeros(n_items, np.int64)


def gini_index(exposure: np.ndarray | Sequence[float]) -> float:
    """Gini index of item exposure over ALL items (never-shown items count as 0).

    With the n counts sorted ascending ``x_(1) <= ... <= x_(n)``:
    ``G = sum_i (2i - n - 1) x_(i) / (n sum_i x_i)``; 0 = uniform, (n-1)/n = all on one item.
    Defined as 0 when nothing was exposed.
    """
    x = np.sort(np.asarray(exposure, dtype=np.float64).ravel())
    if x.size and x[0] < 0:
        raise ValueError(f"exposure counts must be >= 0 (got min {x[0]})")
    total = x.sum()
    if x.size == 0 or total == 0:
        return 0.0
    n = x.size
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def popularity_rate(recommended: np.ndarray, is_popular: np.ndarray) -> float:
    """Share of filled recommendation slots (id >= 0) holding a popular item:
    ``sum 1[is_popular[item]] / #slots``."""
    ids = np.asarray(recommended).ravel()
    ids = ids[ids >= 0]
    return float(np.asarray(is_popular, dtype=bool)[ids].mean()) if ids.size else 0.0


def violation_rate(episode_costs: np.ndarray | Sequence[float], limit: float) -> float:
    """Share of episodes whose cost exceeds the limit: ``mean 1[cost > d]``."""
    costs = np.asarray(episode_costs, dtype=np.float64)
    return float(np.mean(costs > limit)) if costs.size else 0.0


# ---------------------------------------------------------------- probe AUC


def roc_auc(y_true: np.ndarray | Sequence[int], scores: np.ndarray) -> dict[str, float]:
    """ROC-AUC of a probe predicting a sensitive attribute (0.5 = nothing leaks).

    Binary (two classes, ``scores`` [n] for the positive class or [n, 2] probabilities):
    ``{"auc"}``. Multi-class (``scores`` [n, C] class probabilities, rows summing to 1, labels
    in 0..C-1): ``{"auc": ovo, "auc_ovo": macro one-vs-one (Hand & Till), "auc_ovr": macro
    one-vs-rest}``.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 2):
        if np.unique(y).size != 2:
            raise ValueError(f"binary AUC needs both classes in y_true (got {np.unique(y).tolist()})")
        return {"auc": float(roc_auc_score(y, s if s.ndim == 1 else s[:, 1]))}
    if s.ndim != 2:
        raise ValueError(f"scores must be [n] or [n, C] (got shape {s.shape})")
    if not np.allclose(s.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("multi-class scores must be probabilities whose rows sum to 1; apply softmax to logits first")
    labels = np.arange(s.shape[1])
    ovo = float(roc_auc_score(y, s, multi_class="ovo", average="macro", labels=labels))
    ovr = float(roc_auc_score(y, s, multi_class="ovr", average="macro", labels=labels))
    return {"auc": ovo, "auc_ovo": ovo, "auc_ovr": ovr}


# ---------------------------------------------------------------- Pareto front


def pareto_front(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` [n, m].

    Row j dominates row i if it is at least as good in every column and strictly better in one
    (better = larger where ``maximize[col]`` else smaller). Rows with NaN are never on the front;
    identical rows do not dominate each other, so both are kept.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != len(maximize):
        raise ValueError(f"points must be [n, {len(maximize)}] to match maximize (got shape {pts.shape})")
    oriented = np.where(np.asarray(maximize, dtype=bool), pts, -pts)  # now larger is better
    finite = np.logical_not(np.isnan(oriented).any(axis=1))
    o = np.where(finite[:, None], oriented, -np.inf)
    geq = (o[:, None, :] >= o[None, :, :]).all(axis=2)  # geq[j, i]: j >= i everywhere
    gt = (o[:, None, :] > o[None, :, :]).any(axis=2)
    dominated = ((geq & gt) & finite[:, None]).any(axis=0)
    return np.asarray(finite & ~dominated, dtype=bool)

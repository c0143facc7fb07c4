"""Ranking, fairness and trade-off metrics shared by P5/CFP evaluation, FCPO and the sweeps.

Pure numpy (sklearn for AUC). Every metric declares its direction in :data:`METRICS`, so Tune's
``mode=`` is derived with :func:`metric_mode` instead of being retyped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = [
    "METRICS",
    "MetricSpec",
    "average_popularity",
    "differential_fairness",
    "exposure_counts",
    "exposure_metrics",
    "gini_index",
    "group_gap",
    "long_tail_share",
    "popular_exposure",
    "hit_at_k",
    "metric_mode",
    "metric_spec",
    "ndcg_at_k",
    "pareto_front",
    "popularity_rate",
    "precision_recall_f1_ndcg_at_k",
    "rank_weighted_exposure",
    "roc_auc",
    "top_k_indicator",
    "violation_rate",
    "yao_huang",
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
        MetricSpec("gap", False, "mean absolute difference of a per-user metric over all pairs of user groups"),
        MetricSpec("yh_value", False, "Yao-Huang value unfairness (signed per-item errors compared across groups)"),
        MetricSpec("yh_absolute", False, "Yao-Huang absolute unfairness (error magnitudes compared across groups)"),
        MetricSpec("yh_under", False, "Yao-Huang underestimation unfairness"),
        MetricSpec("yh_over", False, "Yao-Huang overestimation unfairness"),
        MetricSpec("yh_parity", False, "Yao-Huang non-parity: gap in mean predicted relevance across groups"),
        MetricSpec("df_epsilon", False, "differential fairness epsilon (Foulds et al. 2020), 0 = equal outcomes"),
        MetricSpec("exposure_gini", False, "Gini of rank-weighted exposure over all items"),
        MetricSpec("popular_exposure_share", False, "share of rank-weighted exposure given to popular items"),
        MetricSpec("popular_exposure_ratio", False, "mean exposure of a popular item / of a long-tail item"),
        MetricSpec("arp", False, "average recommendation popularity (training interactions per shown item)"),
        MetricSpec("aplt", True, "average share of long-tail items in a user's list"),
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


# ---------------------------------------------------------------- user-side outcome fairness
#
# Users carry an int group label (a sensitive attribute's class). Every multi-group metric is an
# average or a max over *unordered pairs of non-empty groups*; a group with no user is skipped
# (it has no mean), and with fewer than two non-empty groups every gap is 0.


def _groups(groups: np.ndarray | Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels as int array, the sorted labels that occur)."""
    g = np.asarray(groups).astype(np.int64).ravel()
    if g.shape != (n,):
        raise ValueError(f"groups must hold one label per user ({n}), got shape {np.shape(groups)}")
    return g, np.unique(g)


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(n) for b in range(a + 1, n)]


def group_gap(values: np.ndarray | Sequence[float], groups: np.ndarray | Sequence[int]) -> dict[str, Any]:
    """Accuracy gap between user groups of a per-user metric (e.g. each user's hit@10 or NDCG@10).

    With ``m_g`` the mean of ``values`` over the users of group g (non-empty groups only):
    ``gap = mean_{g < h} |m_g - m_h|`` over all unordered pairs (for two groups: ``|m_0 - m_1|``),
    ``max_gap = max_g m_g - min_g m_g``. Returns ``{"gap", "max_gap", "per_group": {g: m_g},
    "n_per_group": {g: n_g}}`` (labels as strings, JSON-ready).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    g, present = _groups(groups, v.size)
    means = np.array([v[g == c].mean() for c in present])
    pairs = _pairs(len(present))
    gap = float(np.mean([abs(means[a] - means[b]) for a, b in pairs])) if pairs else 0.0
    return {
        "gap": gap,
        "max_gap": float(means.max() - means.min()) if means.size else 0.0,
        "per_group": {str(c): float(m) for c, m in zip(present, means, strict=True)},
        "n_per_group": {str(c): int((g == c).sum()) for c in present},
    }


def top_k_indicator(recommended: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """Bool [n_users, n_items]: True where the item is among the user's first k recommendations
    (negative ids = empty slots, ignored)."""
    rec = np.asarray(recommended)[:, :k]
    out = np.zeros((rec.shape[0], n_items), dtype=bool)
    rows, cols = np.nonzero(rec >= 0)
    out[rows, rec[rows, cols]] = True
    return out


def yao_huang(
    predicted: np.ndarray, truth: np.ndarray, groups: np.ndarray | Sequence[int], items: np.ndarray | None = None
) -> dict[str, float]:
    """Yao & Huang (2017) unfairness of predicted vs true relevance, generalised to any number of
    groups as the mean over unordered pairs of non-empty groups (g, h).

    ``predicted`` / ``truth``: [n_users, n_items] (e.g. the top-k indicator vs the held-out item
    indicator, or scores in [0, 1] vs ratings in [0, 1]). Per item j and group g,
    ``E_g[y]_j`` / ``E_g[r]_j`` are the group's mean prediction / truth and ``d_gj = E_g[y]_j - E_g[r]_j``.
    Over the items (all, or ``items``), for one pair:

    * value     = mean_j |d_gj - d_hj|
    * absolute  = mean_j ||d_gj| - |d_hj||
    * under     = mean_j |max(0, -d_gj) - max(0, -d_hj)|
    * over      = mean_j |max(0, d_gj) - max(0, d_hj)|
    * non-parity = |mean(y over g's users and the items) - mean(y over h's)|

    With exactly k recommendations per user and ``predicted`` the top-k indicator, every user's
    mean prediction is k / n_items, so non-parity is 0 by construction (it is informative only
    for scores). Fewer than two non-empty groups: all 0.
    """
    y = np.asarray(predicted, dtype=np.float64)
    r = np.asarray(truth, dtype=np.float64)
    if y.ndim != 2 or y.shape != r.shape:
        raise ValueError(f"predicted and truth must be [n_users, n_items] of one shape (got {y.shape}, {r.shape})")
    g, present = _groups(groups, y.shape[0])
    if items is not None:
        y, r = y[:, items], r[:, items]
    d = np.stack([y[g == c].mean(axis=0) - r[g == c].mean(axis=0) for c in present])
    mean_y = np.array([y[g == c].mean() for c in present])
    terms: dict[str, list[float]] = {"value": [], "absolute": [], "under": [], "over": [], "non_parity": []}
    for a, b in _pairs(len(present)):
        da, db = d[a], d[b]
        terms["value"].append(float(np.mean(np.abs(da - db))))
        terms["absolute"].append(float(np.mean(np.abs(np.abs(da) - np.abs(db)))))
        terms["under"].append(float(np.mean(np.abs(np.maximum(0, -da) - np.maximum(0, -db)))))
        terms["over"].append(float(np.mean(np.abs(np.maximum(0, da) - np.maximum(0, db)))))
        terms["non_parity"].append(float(abs(mean_y[a] - mean_y[b])))
    return {key: float(np.mean(vals)) if vals else 0.0 for key, vals in terms.items()}


def differential_fairness(outcome: np.ndarray, groups: np.ndarray | Sequence[int], alpha: float = 1.0) -> float:
    """Smoothed empirical differential fairness ε (Foulds et al. 2020) of a binary outcome per item.

    ``outcome``: [n_users, n_items] in [0, 1] (e.g. 1 = the item is in the user's top k). For a
    non-empty group g with n_g users and item j, the Dirichlet-smoothed probability of the outcome is
    ``p_gj = (sum_{u in g} y_uj + alpha) / (n_g + 2 alpha)`` (and ``1 - p_gj`` of its absence).
    ``ε = max_j max_{g, h} max(|log p_gj - log p_hj|, |log(1 - p_gj) - log(1 - p_hj)|)``;
    0 = every group gets every item equally often. Fewer than two non-empty groups: 0.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 (got {alpha})")
    y = np.asarray(outcome, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"outcome must be [n_users, n_items] (got shape {y.shape})")
    g, present = _groups(groups, y.shape[0])
    if len(present) < 2:
        return 0.0
    p = np.stack([(y[g == c].sum(axis=0) + alpha) / ((g == c).sum() + 2 * alpha) for c in present])
    logs = np.concatenate([np.log(p), np.log1p(-p)], axis=1)  # [groups, 2 * n_items]
    return float((logs.max(axis=0) - logs.min(axis=0)).max())


# ---------------------------------------------------------------- item-side exposure


def rank_weighted_exposure(recommended: np.ndarray, n_items: int) -> np.ndarray:
    """Exposure of each of ``n_items`` items: ``sum over lists and positions of 1 / log2(1 + rank)``
    with 1-based rank (rank 1 -> 1, rank 2 -> 0.63, ...); negative ids = empty slots (ignored).
    Items never shown get 0."""
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be [n_lists, K] (got shape {rec.shape})")
    weights = np.broadcast_to(1.0 / np.log2(np.arange(rec.shape[1]) + 2.0), rec.shape)
    valid = rec >= 0
    return np.bincount(rec[valid], weights=weights[valid], minlength=n_items)[:n_items].astype(np.float64)


def popular_exposure(exposure: np.ndarray, is_popular: np.ndarray) -> dict[str, float]:
    """Share and ratio of the popular group's exposure (Singh & Joachims 2018's disparate exposure).

    ``share = sum_{i popular} e_i / sum_i e_i`` (0 when nothing is exposed);
    ``ratio = mean_{i popular} e_i / mean_{i long tail} e_i`` (1 = equal exposure per item; ``inf``
    when the long tail gets nothing but the popular group does, NaN when a group is empty or
    nothing is exposed)."""
    e = np.asarray(exposure, dtype=np.float64)
    pop = np.asarray(is_popular, dtype=bool)
    total = e.sum()
    share = float(e[pop].sum() / total) if total > 0 else 0.0
    if not pop.any() or pop.all() or total == 0:
        ratio = float("nan")
    else:
        tail = e[~pop].mean()
        ratio = float(e[pop].mean() / tail) if tail > 0 else float("inf")
    return {"share": share, "ratio": ratio}


def average_popularity(recommended: np.ndarray, popularity: np.ndarray) -> float:
    """ARP: ``mean_u (1 / |L_u|) sum_{i in L_u} phi(i)``, phi = an item's training interactions;
    lists with no filled slot are skipped (0 when none is filled)."""
    rec = np.asarray(recommended)
    phi = np.asarray(popularity, dtype=np.float64)
    valid = rec >= 0
    n = valid.sum(axis=1)
    sums = np.where(valid, phi[np.where(valid, rec, 0)], 0.0).sum(axis=1)
    keep = n > 0
    return float(np.mean(sums[keep] / n[keep])) if keep.any() else 0.0


def long_tail_share(recommended: np.ndarray, is_popular: np.ndarray) -> float:
    """APLT: ``mean_u |L_u ∩ long tail| / |L_u|`` (long tail = not popular); lists with no filled
    slot are skipped (0 when none is filled)."""
    rec = np.asarray(recommended)
    pop = np.asarray(is_popular, dtype=bool)
    valid = rec >= 0
    n = valid.sum(axis=1)
    tail = (valid & ~pop[np.where(valid, rec, 0)]).sum(axis=1)
    keep = n > 0
    return float(np.mean(tail[keep] / n[keep])) if keep.any() else 0.0


def exposure_metrics(
    recommended: np.ndarray, n_items: int, popularity: np.ndarray, is_popular: np.ndarray
) -> dict[str, float]:
    """Item-side exposure of ranked lists ``recommended`` [n_lists, K] (one list per user, or an
    episode's step-major concatenation, which amortises exposure over the whole episode):
    ``exposure_gini`` (Gini of rank-weighted exposure over all ``n_items``, unseen items = 0),
    ``popular_exposure_share`` / ``popular_exposure_ratio`` (:func:`popular_exposure`),
    ``arp`` (:func:`average_popularity`), ``aplt`` (:func:`long_tail_share`) and
    ``item_coverage`` (share of items shown at least once)."""
    exposure = rank_weighted_exposure(recommended, n_items)
    pop = popular_exposure(exposure, is_popular)
    return {
        "exposure_gini": gini_index(exposure),
        "popular_exposure_share": pop["share"],
        "popular_exposure_ratio": pop["ratio"],
        "arp": average_popularity(recommended, popularity),
        "aplt": long_tail_share(recommended, is_popular),
        "item_coverage": float((exposure > 0).mean()) if n_items else 0.0,
    }

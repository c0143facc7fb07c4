"""User- and item-side outcome fairness of leave-one-out rankings, shared by CFP (backbone, CFP,
mixture subsets) and the adversarial-MF baseline. Pure numpy over ``fairrec_ray.metrics``.

Input: each evaluated user's ranked items (``items`` [n_users, K], -1 = empty slot), the held-out
gold item, and the users' sensitive-attribute labels. Output: flat ``{key: float}`` (JSON-ready),
the keys listed in :data:`OUTCOME_KEYS` (``{attr}/`` prefixed when several attributes are given)
and :data:`EXPOSURE_KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fairrec_ray.metrics import (
    differential_fairness,
    exposure_metrics,
    group_gap,
    top_k_indicator,
    yao_huang,
)

TOP_K = 10
OUTCOME_KEYS = (
    "gap_hit@10",
    "gap_ndcg@10",
    "yh_value",
    "yh_absolute",
    "yh_under",
    "yh_over",
    "yh_parity",
    "df_epsilon",
)
EXPOSURE_KEYS = ("exposure_gini", "popular_exposure_share", "popular_exposure_ratio", "arp", "aplt", "item_coverage")


def per_user_hit_ndcg(items: np.ndarray, golds: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Each user's hit@k (1 if the gold is in the first k) and NDCG@k (``1 / log2(rank + 2)``)."""
    top = np.asarray(items)[:, :k]
    match = top == np.asarray(golds)[:, None]
    hit = match.any(axis=1)
    rank = np.where(hit, match.argmax(axis=1), 0)
    return hit.astype(np.float64), np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)


def group_outcomes(
    items: np.ndarray, golds: np.ndarray, labels: np.ndarray, n_items: int, k: int = TOP_K
) -> dict[str, float]:
    """User-side metrics of one attribute: the hit@k / NDCG@k gap between groups
    (``metrics.group_gap``, plus the per-group means), Yao-Huang of the top-k indicator vs the
    held-out item, and differential fairness ε of being recommended each item.

    The predictions are yes/no (exactly k items per user), so ``yh_parity`` is 0 by construction."""
    hit, ndcg = per_user_hit_ndcg(items, golds, k)
    out: dict[str, float] = {}
    for name, values in ((f"hit@{k}", hit), (f"ndcg@{k}", ndcg)):
        gap = group_gap(values, labels)
        out[f"gap_{name}"] = gap["gap"]
        out[f"max_gap_{name}"] = gap["max_gap"]
        out.update({f"{name}_group_{g}": m for g, m in gap["per_group"].items()})
    predicted = top_k_indicator(items, n_items, k)
    truth = np.zeros_like(predicted)
    truth[np.arange(len(golds)), np.asarray(golds)] = True
    yh = yao_huang(predicted, truth, labels)
    out.update({f"yh_{key}": yh[key] for key in ("value", "absolute", "under", "over")})
    out["yh_parity"] = yh["non_parity"]
    out["df_epsilon"] = differential_fairness(predicted, labels)
    return out


def ranking_outcomes(
    items: np.ndarray,
    golds: np.ndarray,
    labels: np.ndarray | Mapping[str, np.ndarray],
    n_items: int,
    popularity: np.ndarray,
    k: int = TOP_K,
    popular_share: float = 0.2,
) -> dict[str, float]:
    """:func:`group_outcomes` for ``labels`` (one array, keys unprefixed; or ``{attr: labels}``,
    keys ``attr/...``) plus the exposure metrics of the top-k lists (``metrics.exposure_metrics``;
    popular = the top ``popular_share`` of items by ``popularity``, the training interaction counts)."""
    from fairrec_ray.data.splits import popular_items

    out: dict[str, float] = {}
    if isinstance(labels, Mapping):
        for attr, lab in labels.items():
            out.update({f"{attr}/{key}": v for key, v in group_outcomes(items, golds, lab, n_items, k).items()})
    else:
        out.update(group_outcomes(items, golds, labels, n_items, k))
    is_popular = popular_items(np.asarray(popularity), top_share=popular_share)
    out.update(exposure_metrics(np.asarray(items)[:, :k], n_items, popularity, is_popular))
    return out

"""Dataset statistics as one JSON-ready dict (``python -m fairrec_ray.data describe``): sizes,
per-attribute class counts, split sizes, and the popular item group's size and share of training
interactions. Where no user has enough positives for the FCPO split (ownership data such as
insurance), ``splits.fcpo`` is ``{"applicable": false, "reason": ..., ...}``."""

from __future__ import annotations

from typing import Any

import numpy as np

from fairrec_ray.data.schema import RecDataset
from fairrec_ray.data.splits import NO_ITEM, FCPONotApplicable, fcpo_split, leave_one_out, popular_items


def describe(dataset: RecDataset, popular_share: float = 0.2, positive_threshold: float = 4.0) -> dict[str, Any]:
    loo = leave_one_out(dataset)
    train_counts = loo.train_item_counts(dataset.n_items)
    popular = popular_items(train_counts, popular_share)
    attributes = {}
    for name, classes in dataset.attributes.items():
        counts = np.bincount(dataset.attribute_labels(name), minlength=len(classes))
        attributes[name] = {cls: int(n) for cls, n in zip(classes, counts)}
    return {
        "dataset": dataset.name,
        "users": dataset.n_users,
        "items": dataset.n_items,
        "interactions": dataset.n_interactions,
        "attributes": attributes,
        "splits": {
            "leave_one_out": {
                "users": len(loo),
                "dropped_users": loo.n_dropped,
                "train_interactions": int(sum(len(t) for t in loo.train)),
                "valid": int((loo.valid != NO_ITEM).sum()),
                "test": len(loo.test),
            },
            "fcpo": fcpo_summary(dataset, positive_threshold),
        },
        "popular_group": {
            "share_of_items": popular_share,
            "items": int(popular.sum()),
            "share_of_train_interactions": round(float(train_counts[popular].sum() / train_counts.sum()), 4),
        },
    }


def fcpo_summary(dataset: RecDataset, positive_threshold: float) -> dict[str, Any]:
    try:
        fcpo = fcpo_split(dataset, positive_threshold=positive_threshold)
    except FCPONotApplicable as exc:  # the rest of the report still holds
        return {
            "applicable": False,
            "reason": exc.reason,
            "positive_threshold": positive_threshold,
            "max_positives_per_user": exc.max_positives,
        }
    return {
        "users": len(fcpo),
        "dropped_users": fcpo.n_dropped,
        "positive_threshold": positive_threshold,
        "train_positives": int(sum(len(p) for p in fcpo.train_positives)),
        "test_positives": int(sum(len(p) for p in fcpo.test_positives)),
    }

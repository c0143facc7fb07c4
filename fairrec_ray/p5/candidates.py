"""Candidate sets of the two evaluation protocols, shared by P5 and the baselines so that every
model is ranked against exactly the same items.

- ``full``: every item not in the user's *input* history for the stage, plus the gold item.
- ``sampled-100``: the gold + 100 negatives drawn uniformly (seeded per user and stage) from real
  item indices the user never interacted with (train, valid or test) — the paper's protocol with
  its bug of drawing from the user-id range fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from fairrec_ray.data.splits import NO_ITEM, LeaveOneOutSplit
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5.examples import Stage, eval_history

Protocol = Literal["full", "sampled-100"]
PROTOCOLS: tuple[str, ...] = ("full", "sampled-100")
N_SAMPLED = 100
_STAGE_CODE = {"valid": 1, "test": 2}


def gold_items(split: LeaveOneOutSplit, stage: Stage, rows: Sequence[int]) -> np.ndarray:
    golds = split.valid if stage == "valid" else split.test
    return np.asarray(golds)[np.asarray(rows, dtype=np.int64)]


def candidate_mask(
    split: LeaveOneOutSplit, protocol: Protocol, stage: Stage, rows: Sequence[int], n_items: int, seed: int = 0
) -> np.ndarray:
    """Boolean ``[len(rows), n_items]``: True on the items ranked for each row."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol: got {protocol!r}; expected one of {list(PROTOCOLS)}")
    rows = np.asarray(rows, dtype=np.int64)
    golds = gold_items(split, stage, rows)
    mask = np.zeros((len(rows), n_items), dtype=bool)
    for i, row in enumerate(rows.tolist()):
        if protocol == "full":
            mask[i] = True
            mask[i, eval_history(split, row, stage)] = False
        else:
            seen = np.zeros(n_items, dtype=bool)
            seen[split.train[row]] = True
            for extra in (split.valid[row], split.test[row]):
                if extra != NO_ITEM:
                    seen[extra] = True
            pool = np.flatnonzero(~seen)
            rng = np.random.default_rng([seed, _STAGE_CODE[stage], int(split.users[row])])
            mask[i, rng.choice(pool, size=min(N_SAMPLED, len(pool)), replace=False)] = True
        mask[i, golds[i]] = True
    return mask


def rank_of_gold(scores: np.ndarray, mask: np.ndarray, golds: np.ndarray) -> np.ndarray:
    """0-based rank of the gold among the candidates by descending score (ties broken by lower
    item index, deterministically); for score-based models (the baselines)."""
    scores = np.where(mask, scores, -np.inf)
    gold_score = scores[np.arange(len(golds)), golds][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    better = (scores > gold_score) | ((scores == gold_score) & (idx < golds[:, None]))
    return (better & mask).sum(axis=1).astype(np.int64)

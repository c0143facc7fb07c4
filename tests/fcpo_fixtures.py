"""Hand-built FCPO env data with a planted structure (shared by the FCPO tests).

Items (``dim = 4``): ``n_popular`` popular items along axis 0 (G0), ``n_tail_pos`` long-tail items
along axis 1, and the rest long-tail "filler" items in the plane of axes 2/3. Every user's
held-out positives are all popular items plus all axis-1 items; start states are filler items.
So the reward-optimal direction mixes axes 0 and 1 (many popular items: high cost), while the
fair optimum points along axis 1: a small alpha makes the cost limit bind. ``exposure_scale > 0``
adds the exposure coordinate (a score offset for every popular item) to the action.
"""

from __future__ import annotations

import numpy as np

from fairrec_ray.fcpo.env_data import Ragged, RecEnvData


def planted_env_data(
    n_users: int = 256,
    n_popular: int = 12,
    n_tail_pos: int = 6,
    n_filler: int = 42,
    popular_norm: float = 0.6,
    seed: int = 0,
    exposure_scale: float = 0.0,
) -> RecEnvData:
    rng = np.random.default_rng(seed)
    n_items = n_popular + n_tail_pos + n_filler
    emb = np.zeros((n_items, 4), np.float32)
    emb[:n_popular, 0] = popular_norm
    emb[n_popular : n_popular + n_tail_pos, 1] = 1.0
    angles = rng.uniform(0, 2 * np.pi, n_filler)
    emb[n_popular + n_tail_pos :, 2] = np.cos(angles)
    emb[n_popular + n_tail_pos :, 3] = np.sin(angles)
    emb += rng.normal(0, 0.05, emb.shape).astype(np.float32)
    popular = np.zeros(n_items, bool)
    popular[:n_popular] = True
    fillers = np.arange(n_popular + n_tail_pos, n_items)
    start = np.stack([rng.choice(fillers, 5, replace=False) for _ in range(n_users)])
    positives = [np.arange(n_popular + n_tail_pos) for _ in range(n_users)]
    ragged = Ragged.from_lists(positives)
    return RecEnvData(
        item_emb=emb,
        popular=popular,
        train_start=start,
        train_positives=ragged,
        test_start=start.copy(),
        test_positives=ragged,
        test_history=Ragged.from_lists([np.zeros(0, np.int64) for _ in range(n_users)]),
        positive_threshold=4.0,
        user_ids=np.arange(n_users),
        exposure_scale=exposure_scale,
    )

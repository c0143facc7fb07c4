"""Seeded MovieLens-shaped generator with a planted attribute -> preference dependence.

Each item has one genre and a popularity bias. A user's genre taste is a random base plus
``signal`` times offsets tied to their gender, age group and occupation, so a model that learns
tastes also learns the attributes (something for CFP to remove); ``signal=0`` plants nothing.
Users consume genres in runs ("binges"): the next item's genre is predictable from the recent
history, which gives a sequential recommender something to learn beyond popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairrec_ray.data.movielens import AGE_GROUPS, GENDERS, ML100K_OCCUPATIONS
from fairrec_ray.data.schema import RecDataset
from fairrec_ray.errors import DataError

# Class frequencies close to ML-100K's, so class balance looks like the real data.
GENDER_P = (0.29, 0.71)
AGE_P = (0.05, 0.23, 0.33, 0.20, 0.08, 0.07, 0.04)


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 943
    n_items: int = 1682
    n_genres: int = 18
    mean_interactions: float = 106.0
    min_interactions: int = 20
    signal: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_users < 2 or self.n_items < 10 or self.n_genres < 2:
            raise DataError("synthetic: need n_users >= 2, n_items >= 10 and n_genres >= 2")
        if not 3 <= self.min_interactions <= self.mean_interactions <= self.n_items:
            raise DataError("synthetic: need 3 <= min_interactions <= mean_interactions <= n_items")
        if self.signal < 0:
            raise DataError(f"synthetic: signal must be >= 0, got {self.signal}")


def generate_synthetic(config: SyntheticConfig = SyntheticConfig()) -> RecDataset:
    rng = np.random.default_rng(config.seed)
    n_u, n_i, n_g = config.n_users, config.n_items, config.n_genres

    gender = rng.choice(len(GENDERS), size=n_u, p=GENDER_P)
    age = rng.choice(len(AGE_GROUPS), size=n_u, p=AGE_P)
    occupation = rng.integers(len(ML100K_OCCUPATIONS), size=n_u)
    offsets = [rng.normal(0.0, 1.5, size=(n, n_g)) for n in (2, 7, 21)]
    taste = rng.normal(0.0, 1.0, size=(n_u, n_g)) + config.signal * (
        offsets[0][gender] + offsets[1][age] + 0.7 * offsets[2][occupation]
    )
    item_genre = rng.integers(n_g, size=n_i)
    item_bias = rng.normal(0.0, 1.0, size=n_i)

    # Gumbel top-k = sampling without replacement proportional to exp(score).
    scores = 1.5 * taste[:, item_genre] + item_bias[None, :]
    perturbed = scores + rng.gumbel(size=scores.shape)
    extra = rng.geometric(1.0 / max(1.0, config.mean_interactions - config.min_interactions + 1), size=n_u) - 1
    counts = np.minimum(config.min_interactions + extra, n_i)
    order = np.argsort(-perturbed, axis=1)

    users, items, times, ratings = [], [], [], []
    session_key = rng.random((n_u, n_g))  # when each genre's binge happens for each user
    for u in range(n_u):
        chosen = order[u, : counts[u]]
        when = session_key[u, item_genre[chosen]] + 0.05 * rng.random(len(chosen))
        chosen = chosen[np.argsort(when)]
        own = scores[u, chosen]
        z = (own - own.mean()) / (own.std() + 1e-9)
        users.append(np.full(len(chosen), u))
        items.append(chosen)
        times.append(880_000_000 + np.arange(len(chosen)) * 3600 + u)
        ratings.append(np.clip(np.round(3.5 + z + rng.normal(0, 0.5, len(chosen))), 1, 5))

    interactions = pd.DataFrame(
        {
            "user_idx": np.concatenate(users).astype(np.int64),
            "item_idx": np.concatenate(items).astype(np.int64),
            "rating": np.concatenate(ratings).astype(np.float32),
            "timestamp": np.concatenate(times).astype(np.int64),
        }
    )
    users_df = pd.DataFrame(
        {
            "user_idx": np.arange(n_u, dtype=np.int64),
            "raw_id": [str(u + 1) for u in range(n_u)],
            "gender": gender.astype(np.int64),
            "age": age.astype(np.int64),
            "occupation": occupation.astype(np.int64),
        }
    )
    items_df = pd.DataFrame(
        {
            "item_idx": np.arange(n_i, dtype=np.int64),
            "raw_id": [str(i + 1) for i in range(n_i)],
            "title": [f"item {i + 1}" for i in range(n_i)],
            "genres": [f"genre{g}" for g in item_genre],
        }
    )
    attributes = {"gender": GENDERS, "age": AGE_GROUPS, "occupation": ML100K_OCCUPATIONS}
    return RecDataset("synthetic", interactions, users_df, items_df, attributes).validate()

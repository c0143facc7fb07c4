"""MovieLens-100K (GroupLens ``u.*``) and MovieLens-1M (``*.dat``, ``::``) loaders.

Sensitive attributes, identical encodings for both sizes so results compare:
gender (F, M); age in ML-1M's 7 groups (ML-100K's raw ages are binned onto them);
occupation (21 classes, each dataset's own names).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairrec_ray.data.parsing import read_delimited, require_file
from fairrec_ray.data.schema import RecDataset, reindex
from fairrec_ray.errors import DataError

GENDERS = ("F", "M")
AGE_GROUPS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
# ML-1M's age codes are the lower bounds of AGE_GROUPS.
ML1M_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)
ML100K_OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
ATTRIBUTES = {"gender": GENDERS, "age": AGE_GROUPS}


def age_group(ages: np.ndarray) -> np.ndarray:
    """Bin raw ages onto ML-1M's groups: the index of the last lower bound ≤ age."""
    return np.searchsorted(np.asarray(ML1M_AGE_CODES[1:]), ages, side="right").astype(np.int64)


def _encode(values: pd.Series, classes: tuple[str, ...], path: Path, field: str) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(classes)}
    codes = values.map(lookup)
    if codes.isna().any():
        bad = values[codes.isna()].iloc[0]
        raise DataError(f"{path}: field {field!r} has unknown value {bad!r}; expected one of {list(classes)}")
    return codes.to_numpy(dtype=np.int64)


def load_movielens_100k(data_dir: Path) -> RecDataset:
    data_path = require_file(data_dir, "u.data")
    user_path = require_file(data_dir, "u.user")
    item_path = require_file(data_dir, "u.item")
    ratings = read_delimited(
        data_path, "\t", ["raw_user", "raw_item", "rating", "timestamp"],
        {"raw_user": "int64", "raw_item": "int64", "rating": "float32", "timestamp": "int64"},
    )  # fmt: skip
    users = read_delimited(
        user_path, "|", ["raw_id", "age", "gender", "occupation", "zip"], {"raw_id": "int64", "age": "int64"}
    )
    item_cols = ["raw_id", "title", "release", "video_release", "url", *ML100K_GENRES]
    items = read_delimited(item_path, "|", item_cols, {"raw_id": "int64"})
    flags = items[list(ML100K_GENRES)].to_numpy() == "1"
    genre_names = np.array(ML100K_GENRES)
    raw_items = pd.DataFrame(
        {
            "raw_id": items["raw_id"],
            "title": items["title"],
            "genres": ["|".join(genre_names[row]) for row in flags],
        }
    )
    raw_users = pd.DataFrame(
        {
            "raw_id": users["raw_id"],
            "gender": _encode(users["gender"], GENDERS, user_path, "gender"),
            "age": age_group(users["age"].to_numpy()),
            "occupation": _encode(users["occupation"], ML100K_OCCUPATIONS, user_path, "occupation"),
        }
    )
    return _assemble("movielens-100k", ratings, raw_users, raw_items, ML100K_OCCUPATIONS)


def load_movielens_1m(data_dir: Path) -> RecDataset:
    ratings_path = require_file(data_dir, "ratings.dat")
    users_path = require_file(data_dir, "users.dat")
    movies_path = require_file(data_dir, "movies.dat")
    ratings = read_delimited(
        ratings_path, "::", ["raw_user", "raw_item", "rating", "timestamp"],
        {"raw_user": "int64", "raw_item": "int64", "rating": "float32", "timestamp": "int64"},
    )  # fmt: skip
    users = read_delimited(
        users_path, "::", ["raw_id", "gender", "age", "occupation", "zip"],
        {"raw_id": "int64", "age": "int64", "occupation": "int64"},
    )  # fmt: skip
    movies = read_delimited(movies_path, "::", ["raw_id", "title", "genres"], {"raw_id": "int64"})
    bad_age = ~users["age"].isin(ML1M_AGE_CODES)
    if bad_age.any():
        raise DataError(
            f"{users_path}: field 'age' has unknown code {users['age'][bad_age].iloc[0]}; "
            f"expected one of {list(ML1M_AGE_CODES)}"
        )
    bad_occ = (users["occupation"] < 0) | (users["occupation"] >= len(ML1M_OCCUPATIONS))
    if bad_occ.any():
        raise DataError(
            f"{users_path}: field 'occupation' has code {users['occupation'][bad_occ].iloc[0]}; expected 0..20"
        )
    raw_users = pd.DataFrame(
        {
            "raw_id": users["raw_id"],
            "gender": _encode(users["gender"], GENDERS, users_path, "gender"),
            "age": age_group(users["age"].to_numpy()),
            "occupation": users["occupation"].to_numpy(dtype=np.int64),
        }
    )
    return _assemble("movielens-1m", ratings, raw_users, movies[["raw_id", "title", "genres"]], ML1M_OCCUPATIONS)


def _assemble(
    name: str, ratings: pd.DataFrame, raw_users: pd.DataFrame, raw_items: pd.DataFrame, occupations: tuple
) -> RecDataset:
    interactions, users, items = reindex(ratings, raw_users, raw_items)
    attributes = {**ATTRIBUTES, "occupation": occupations}
    return RecDataset(name, interactions, users, items, attributes).validate()

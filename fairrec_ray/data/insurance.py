"""Insurance (Zimnat recommendation challenge ``Train.csv``): one row per customer, 21 product flags.

Encodings (documented choices for dirty values):
- sex: F/M, case-insensitive; rows with a blank or other sex are dropped (count logged).
- marital: U/S/M, case-insensitive; the rare codes (D, W, R, P, F, ...) are merged into "U", which
  already means "unknown/other" in this data.
- age: 5 bands from ``birth_year``: <=1959, 1960s, 1970s, 1980s, >=1990; a blank year drops the row.
- occupation category: the 3 most frequent codes keep their own class, every other code is merged
  into a 4th class "other" (the paper kept only the top 3; merging keeps every user for FCPO).
There are no timestamps: each user's owned products get a seeded random order (``seed``), so the
leave-one-out split holds out a random owned product, as the paper does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fairrec_ray.data.parsing import require_file, to_numeric_column
from fairrec_ray.data.schema import RecDataset, reindex
from fairrec_ray.errors import DataError

log = logging.getLogger(__name__)

ID_COLUMNS = (
    "ID", "join_date", "sex", "marital_status", "birth_year", "branch_code", "occupation_code",
    "occupation_category_code",
)  # fmt: skip
N_PRODUCTS = 21
SEXES = ("F", "M")
MARITAL = ("U", "S", "M")
AGE_BANDS = ("<=1959", "1960s", "1970s", "1980s", ">=1990")
AGE_BAND_EDGES = (1960, 1970, 1980, 1990)


def load_insurance(data_dir: Path, seed: int = 0) -> RecDataset:
    path = require_file(data_dir, "Train.csv")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a valid CSV file ({exc})") from None
    missing = [c for c in ID_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected {list(ID_COLUMNS)} then 21 products")
    products = [c for c in frame.columns if c not in ID_COLUMNS]
    if len(products) != N_PRODUCTS:
        raise DataError(f"{path}: expected {N_PRODUCTS} product columns after the id columns, found {len(products)}")
    flags = np.stack([to_numeric_column(frame[c], "int64", path, c) for c in products], axis=1)
    bad = ~np.isin(flags, (0, 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: row {row + 1}: product {products[col]!r} must be 0 or 1, got {flags[row, col]}")

    sex = frame["sex"].str.strip().str.upper()
    year = pd.to_numeric(frame["birth_year"].str.strip(), errors="coerce")
    keep = sex.isin(SEXES).to_numpy() & year.notna().to_numpy()
    if (~keep).any():
        log.info("insurance: dropped %d rows with blank/unknown sex or birth_year", int((~keep).sum()))
    if not keep.any():
        raise DataError(f"{path}: no row has a valid sex and birth_year")
    frame, flags, sex, year = frame[keep], flags[keep], sex[keep], year[keep]

    marital = frame["marital_status"].str.strip().str.upper()
    marital = marital.where(marital.isin(MARITAL), "U")
    occ = frame["occupation_category_code"].str.strip().str.upper()
    top3 = tuple(occ.value_counts().index[:3])
    occupation_classes = (*top3, "other")
    occ_label = occ.map({code: i for i, code in enumerate(top3)}).fillna(3)

    raw_users = pd.DataFrame(
        {
            "raw_id": frame["ID"].str.strip().to_numpy(),
            "sex": sex.map({s: i for i, s in enumerate(SEXES)}).to_numpy(dtype=np.int64),
            "marital": marital.map({m: i for i, m in enumerate(MARITAL)}).to_numpy(dtype=np.int64),
            "age": np.searchsorted(AGE_BAND_EDGES, year.to_numpy(), side="right").astype(np.int64),
            "occupation": occ_label.to_numpy(dtype=np.int64),
        }
    )
    if raw_users["raw_id"].duplicated().any():
        dup = raw_users["raw_id"][raw_users["raw_id"].duplicated()].iloc[0]
        raise DataError(f"{path}: customer ID {dup!r} appears more than once")
    user_rows, product_cols = np.nonzero(flags)
    # Seeded order within a user stands in for time: only the order matters to the splits.
    order = np.random.default_rng(seed).random(len(user_rows))
    raw_interactions = pd.DataFrame(
        {
            "raw_user": raw_users["raw_id"].to_numpy()[user_rows],
            "raw_item": np.asarray(products)[product_cols],
            "rating": np.ones(len(user_rows), dtype=np.float32),
            "timestamp": np.argsort(np.argsort(order)).astype(np.int64),
        }
    )
    raw_items = pd.DataFrame({"raw_id": products, "title": products, "genres": ""})
    interactions, users, items = reindex(raw_interactions, raw_users, raw_items)
    attributes = {"sex": SEXES, "marital": MARITAL, "age": AGE_BANDS, "occupation": occupation_classes}
    return RecDataset("insurance", interactions, users, items, attributes).validate()

"""The one in-memory dataset shared by P5/CFP and FCPO.

Users and items are re-indexed to contiguous 0-based integers (``user_idx``, ``item_idx``) at load
time; the raw ids are kept beside them. Sensitive attributes are integer class labels, one column
per attribute in ``users``, with their class names in ``attributes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fairrec_ray.errors import DataError

INTERACTION_COLUMNS = ("user_idx", "item_idx", "rating", "timestamp")


@dataclass
class RecDataset:
    """Interactions, users with sensitive attributes, items.

    interactions: ``user_idx`` int64, ``item_idx`` int64, ``rating`` float32, ``timestamp`` int64
      (for datasets without time, a seeded order: only the order within a user matters).
    users: ``user_idx`` (0..n_users-1, sorted), ``raw_id`` str, one int column per attribute.
    items: ``item_idx`` (0..n_items-1, sorted), ``raw_id`` str, ``title`` str, ``genres`` str
      ("|"-joined, may be empty).
    attributes: attribute name -> class names; label ``i`` of that column means ``classes[i]``.
    """

    name: str
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    def attribute_labels(self, attribute: str) -> np.ndarray:
        """Integer labels of ``attribute`` for every user, indexed by ``user_idx``."""
        self.require_attribute(attribute)
        return self.users[attribute].to_numpy(dtype=np.int64)

    def require_attribute(self, attribute: str) -> None:
        if attribute not in self.attributes:
            known = ", ".join(sorted(self.attributes)) or "none"
            raise DataError(f"unknown attribute {attribute!r} for dataset {self.name!r}; expected one of: {known}")

    def user_sequences(self) -> list[np.ndarray]:
        """Each user's items ordered by (timestamp, original row order); index = user_idx."""
        ordered = self.interactions.sort_values(["user_idx", "timestamp"], kind="stable")
        users = ordered["user_idx"].to_numpy()
        items = ordered["item_idx"].to_numpy()
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]

    def validate(self) -> RecDataset:
        """Check invariants every consumer relies on; raise DataError naming the broken one."""
        if self.n_interactions == 0:
            raise DataError(f"dataset {self.name!r} has no interactions after filtering")
        missing = [c for c in INTERACTION_COLUMNS if c not in self.interactions.columns]
        if missing:
            raise DataError(f"dataset {self.name!r}: interactions lack columns {missing}")
        for table, n, key in ((self.users, self.n_users, "user_idx"), (self.items, self.n_items, "item_idx")):
            if not np.array_equal(table[key].to_numpy(), np.arange(n)):
                raise DataError(f"dataset {self.name!r}: {key} must be 0..{n - 1} in order")
        for col, n in (("user_idx", self.n_users), ("item_idx", self.n_items)):
            values = self.interactions[col].to_numpy()
            if values.min() < 0 or values.max() >= n:
                raise DataError(f"dataset {self.name!r}: interactions.{col} out of range 0..{n - 1}")
        for attr, classes in self.attributes.items():
            labels = self.users[attr].to_numpy()
            if labels.min() < 0 or labels.max() >= len(classes):
                raise DataError(f"dataset {self.name!r}: attribute {attr!r} has labels outside its classes")
        return self


def reindex(
    raw_interactions: pd.DataFrame,
    raw_users: pd.DataFrame,
    raw_items: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Map raw ids to contiguous indices; keep only users/items that have interactions.

    Inputs carry ``raw_user``/``raw_item`` columns (interactions) and ``raw_id`` (users, items).
    Users or items without any interaction are dropped: they can be neither trained nor evaluated.
    """
    user_ids = pd.Index(sorted(set(raw_interactions["raw_user"]) & set(raw_users["raw_id"])))
    item_ids = pd.Index(sorted(set(raw_interactions["raw_item"]) & set(raw_items["raw_id"])))
    keep = raw_interactions["raw_user"].isin(user_ids) & raw_interactions["raw_item"].isin(item_ids)
    inter = raw_interactions[keep]
    interactions = pd.DataFrame(
        {
            "user_idx": user_ids.get_indexer(inter["raw_user"]).astype(np.int64),
            "item_idx": item_ids.get_indexer(inter["raw_item"]).astype(np.int64),
            "rating": inter["rating"].to_numpy(dtype=np.float32),
            "timestamp": inter["timestamp"].to_numpy(dtype=np.int64),
        }
    )
    users = raw_users[raw_users["raw_id"].isin(user_ids)].copy()
    users.insert(0, "user_idx", user_ids.get_indexer(users["raw_id"]).astype(np.int64))
    users = users.sort_values("user_idx").reset_index(drop=True)
    items = raw_items[raw_items["raw_id"].isin(item_ids)].copy()
    items.insert(0, "item_idx", item_ids.get_indexer(items["raw_id"]).astype(np.int64))
    items = items.sort_values("item_idx").reset_index(drop=True)
    users["raw_id"] = users["raw_id"].astype(str)
    items["raw_id"] = items["raw_id"].astype(str)
    return interactions.reset_index(drop=True), users, items

"""Item embeddings for the FCPO env: our own seeded matrix factorisation of the training split.

The reference code loaded frozen 100-d PMF embeddings whose training code was never published; we
fit ``R ~ U V^T`` on the binary user x item matrix of *training* positives (start states + train
feedback, never the test feedback) by alternating ridge regressions (PureSVD-style ALS):

    U = R V (V^T V + reg I)^-1,    V = R^T U (U^T U + reg I)^-1

Dense, vectorised, deterministic for a seed. Results are cached on disk
(``$FAIRREC_CACHE``) keyed by the data and the hyper-parameters, and in memory per process.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from fairrec_ray.data.cache import default_cache_dir

log = logging.getLogger(__name__)


def binary_matrix(n_users: int, n_items: int, user_items: list[np.ndarray]) -> np.ndarray:
    """Dense float32 [n_users, n_items] with 1 where the user interacted with the item."""
    rows = np.repeat(np.arange(n_users), [len(items) for items in user_items])
    matrix = np.zeros((n_users, n_items), dtype=np.float32)
    if rows.size:
        matrix[rows, np.concatenate(user_items)] = 1.0
    return matrix


def als_factorize(
    matrix: np.ndarray, dim: int = 32, reg: float = 1.0, iters: int = 15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Alternating ridge regressions on a dense matrix; returns (user factors, item factors)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = matrix.shape
    r = matrix.astype(np.float64)
    v: np.ndarray = rng.normal(0.0, 0.1, size=(n_items, dim))
    u: np.ndarray = np.zeros((n_users, dim))
    eye = reg * np.eye(dim)
    for _ in range(iters):
        u = np.linalg.solve(v.T @ v + eye, (r @ v).T).T
        v = np.linalg.solve(u.T @ u + eye, (r.T @ u).T).T
    return u.astype(np.float32), v.astype(np.float32)


def _key(matrix: np.ndarray, dim: int, reg: float, iters: int, seed: int) -> str:
    digest = hashlib.sha256(f"als-v1|{matrix.shape}|{dim}|{reg}|{iters}|{seed}".encode())
    digest.update(np.packbits(matrix > 0).tobytes())
    return digest.hexdigest()[:20]


@lru_cache(maxsize=8)
def _cached_by_key(key: str, path: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    if path is None or not os.path.isfile(path):
        return None
    with np.load(path) as archive:
        return archive["users"], archive["items"]


def cached_factorize(
    matrix: np.ndarray,
    dim: int = 32,
    reg: float = 1.0,
    iters: int = 15,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``als_factorize`` with an on-disk ``.npz`` cache (a read-only cache dir only logs a warning)."""
    if not use_cache:
        return als_factorize(matrix, dim, reg, iters, seed)
    key = _key(matrix, dim, reg, iters, seed)
    path = Path(cache_dir) if cache_dir else default_cache_dir()
    file = path / f"fcpo-mf-{key}.npz"
    hit = _cached_by_key(key, str(file) if file.is_file() else None)
    if hit is not None:
        return hit
    users, items = als_factorize(matrix, dim, reg, iters, seed)
    try:
        path.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, users=users, items=items)
        os.replace(tmp, file)
    except OSError as exc:
        log.warning("could not write embedding cache %s: %s", file, exc)
    return users, items


def fold_in_query(item_emb: np.ndarray, reg: float, windows: np.ndarray, target_rms: float = 1.0) -> np.ndarray:
    """The MF fold-in query matrix ``Q = scale * (V^T V + reg I)^-1`` (symmetric, ``[dim, dim]``).

    ``Q @ sum_j e_j`` over a state window is the ridge user vector of someone who consumed exactly
    those items (ALS's user update), so scoring ``w . e_i`` with it ranks like MF. ``scale`` makes
    the query's root-mean-square coordinate ``target_rms`` over ``windows`` ([users, n] item ids),
    so the policy's ``log_std`` has a fixed meaning (noise relative to the signal) whatever the
    embedding scale.
    """
    v = item_emb.astype(np.float64)
    dim = v.shape[1]
    query = np.linalg.inv(v.T @ v + reg * np.eye(dim))
    w = v[windows].sum(1) @ query
    rms = float(np.sqrt(np.mean(w**2))) if w.size else 1.0
    return (query * (target_rms / max(rms, 1e-12))).astype(np.float32)

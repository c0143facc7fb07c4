"""``load_dataset(name, ...)``: the single entry point every job uses to get a dataset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fairrec_ray.data.cache import cached, default_cache_dir
from fairrec_ray.data.insurance import load_insurance
from fairrec_ray.data.movielens import load_movielens_1m, load_movielens_100k
from fairrec_ray.data.schema import RecDataset
from fairrec_ray.data.synthetic import SyntheticConfig, generate_synthetic
from fairrec_ray.errors import DataError

# name -> source files that key the cache (None: generated, never cached)
DATASETS: dict[str, tuple[str, ...] | None] = {
    "movielens-100k": ("u.data", "u.user", "u.item"),
    "movielens-1m": ("ratings.dat", "users.dat", "movies.dat"),
    "insurance": ("Train.csv",),
    "synthetic": None,
}


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    synthetic: SyntheticConfig | None = None,
    use_cache: bool = True,
) -> RecDataset:
    """Load ``name`` from ``data_dir`` (a folder with the dataset's original files).

    ``seed`` seeds the synthetic generator and Insurance's within-user order. Parsed real datasets
    are cached as Parquet under ``cache_dir`` (default ``$FAIRREC_CACHE`` or
    ``~/.cache/fairrec_ray``), keyed by the files' content.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    if name == "synthetic":
        return generate_synthetic(replace(synthetic or SyntheticConfig(), seed=seed))
    files = DATASETS[name] or ()
    if data_dir is None:
        raise DataError(f"dataset {name!r} needs --data-dir pointing at its files ({', '.join(files)})")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")

    def build() -> RecDataset:
        if name == "movielens-100k":
            return load_movielens_100k(data_dir)
        if name == "movielens-1m":
            return load_movielens_1m(data_dir)
        return load_insurance(data_dir, seed=seed)

    sources = [data_dir / f for f in files]
    missing = [p for p in sources if not p.is_file()]
    if missing or not use_cache:
        return build()  # the loader names the missing file
    extra = f"seed={seed}" if name == "insurance" else ""
    return cached(name, sources, build, Path(cache_dir) if cache_dir else default_cache_dir(), extra)

"""Parsed-dataset cache: Parquet tables keyed by the source files' content hash.

Layout: ``<cache_dir>/<dataset>-<key>/{interactions,users,items}.parquet`` plus ``meta.json``
holding the attributes and each Parquet file's SHA-256. A cache entry that fails to read or whose
hashes do not match is rebuilt, never trusted. Entries are written into a temporary folder and
renamed into place, so a crash leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from fairrec_ray.data.schema import RecDataset

log = logging.getLogger(__name__)

CACHE_VERSION = 1
TABLES = ("interactions", "users", "items")


def default_cache_dir() -> Path:
    return Path(os.environ.get("FAIRREC_CACHE", Path.home() / ".cache" / "fairrec_ray"))


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(name: str, sources: Sequence[Path], extra: str = "") -> str:
    digest = hashlib.sha256(f"{name}|v{CACHE_VERSION}|{extra}".encode())
    for path in sources:
        digest.update(Path(path).name.encode())
        digest.update(file_digest(path).encode())
    return digest.hexdigest()[:20]


def cached(
    name: str, sources: Sequence[Path], build: Callable[[], RecDataset], cache_dir: Path, extra: str = ""
) -> RecDataset:
    """Return the cached dataset for these sources, building (and caching) it when absent or bad."""
    entry = Path(cache_dir) / f"{name}-{cache_key(name, sources, extra)}"
    if entry.is_dir():
        dataset = _read_entry(entry, name)
        if dataset is not None:
            return dataset
        log.warning("dataset cache %s is corrupted; rebuilding it", entry)
        shutil.rmtree(entry, ignore_errors=True)
    dataset = build()
    _write_entry(entry, dataset)
    return dataset


def _read_entry(entry: Path, name: str) -> RecDataset | None:
    try:
        meta = json.loads((entry / "meta.json").read_text())
        tables = {}
        for table in TABLES:
            path = entry / f"{table}.parquet"
            if file_digest(path) != meta["sha256"][table]:
                return None
            tables[table] = pd.read_parquet(path)
        attributes = {k: tuple(v) for k, v in meta["attributes"].items()}
        return RecDataset(name, tables["interactions"], tables["users"], tables["items"], attributes).validate()
    except Exception:  # any unreadable entry is rebuilt; the source files stay the truth
        return None


def _write_entry(entry: Path, dataset: RecDataset) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        hashes = {}
        for table in TABLES:
            path = tmp / f"{table}.parquet"
            getattr(dataset, table).to_parquet(path, index=False)
            hashes[table] = file_digest(path)
        meta = {"version": CACHE_VERSION, "attributes": dataset.attributes, "sha256": hashes}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, entry)
    except OSError as exc:  # a read-only or full cache dir must not stop the run
        log.warning("could not write dataset cache %s: %s", entry, exc)
        shutil.rmtree(tmp, ignore_errors=True)

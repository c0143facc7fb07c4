"""Shared fixtures: one Ray instance per test session, the real ML-100K when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# In-process tests talk to their own Ray instance; auth is exercised by the job-submit test.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ML100K_DIR = Path(
    os.environ.get("FAIRREC_ML100K", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ml-100k")
)


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray for the whole session (2 real cores, 4 logical CPUs so Train/Tune trials fit)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            object_store_memory=512 * 1024**2,
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    if not (ML100K_DIR / "u.data").is_file():
        pytest.skip(f"real MovieLens-100K not found at {ML100K_DIR}")
    return ML100K_DIR


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Dataset caches never touch the user's ~/.cache during tests."""
    monkeypatch.setenv("FAIRREC_CACHE", str(tmp_path_factory.getbasetemp() / "fairrec-cache"))

"""fairrec_ray: fairness-aware recommendation (CFP, FCPO, Tune sweeps) on Ray."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
__all__ = ["recommend"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing fairrec_ray stays cheap. The module is callable: fairrec_ray.recommend(...)
    # is the function whether or not fairrec_ray.recommend was imported as a module before.
    if name == "recommend":
        import importlib

        return importlib.import_module("fairrec_ray.recommend")
    raise AttributeError(f"module 'fairrec_ray' has no attribute {name!r}")

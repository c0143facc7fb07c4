"""One Tune trial = one run of a job's Python entry point, its final metrics flattened for Tune.

Each trial writes its job outputs into its own Tune trial folder. CFP trials default to
``num_workers=0`` (the Ray Train loop runs inside the trial process) so a sweep does not nest a
worker group inside every trial on a small machine; set ``base: {num_workers: 2}`` on a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.config import build_config
from fairrec_ray.train_fcpo import FCPOJobConfig

__all__ = ["CFPConfig", "FCPOJobConfig", "run_cfp_trial", "run_fcpo_trial"]


def _trial_dir(config: dict[str, Any]) -> Path:
    """Inside Tune: the trial's own folder. Outside (a manual run, the bench): ``config["output"]``."""
    from ray import tune

    try:
        trial_dir = tune.get_context().get_trial_dir()
    except Exception:
        trial_dir = None
    if trial_dir:
        return Path(trial_dir)
    if "output" not in config:
        raise ValueError("outside a Tune trial, give the trial config an 'output' folder")
    return Path(config["output"])


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_fcpo_trial(config: dict[str, Any]) -> dict[str, float]:
    from fairrec_ray.train_fcpo import run_fcpo

    job = build_config(FCPOJobConfig, {**config, "output": str(_trial_dir(config) / "fcpo")}, "sweep trial")
    results = run_fcpo(job)
    return {**_scalars(results["final_test"]), "cost_limit": float(results["cost_limit"])}


def run_cfp_trial(config: dict[str, Any]) -> dict[str, float]:
    from fairrec_ray.cfp.job import run_cfp

    values = {"num_workers": 0, **config, "output": str(_trial_dir(config) / "cfp")}
    results = run_cfp(build_config(CFPConfig, values, "sweep trial"))
    before = {f"backbone_{k}": v for k, v in _scalars(results["before"]).items()}
    return {**_scalars(results["after"]), **before}

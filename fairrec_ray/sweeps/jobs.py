"""The jobs a sweep can run: an explicit registry of config class, trial function and the metrics
each trial reports — so a sweep whose metric a job does not report fails before any trial starts.

A trial runs the job's Python entry point in its own Tune trial folder and reports every metric
twice: ``valid_<metric>`` (what the front is selected on) and ``test_<metric>`` (reported for the
chosen points). For CFP, ``valid_`` is measured on the validation users and ``test_`` on the
held-out users (``cfp.data``); the trial's λ = 0 control is reported as ``control_test_<metric>``.
Nothing here imports a CLI module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairrec_ray.config import build_config
from fairrec_ray.metrics import RANKING_KEYS

VALID, TEST = "valid_", "test_"


@dataclass(frozen=True)
class SweepJob:
    name: str
    config_path: str  # "module:Class" of the job's config dataclass (imported lazily)
    run_path: str  # "module:function" of the trial: (config dict, trial folder) -> flat metrics
    metrics: tuple[str, ...]  # reported as valid_<m> and test_<m>

    def config_class(self) -> type:
        return _load(self.config_path)

    def run(self, config: dict[str, Any], folder: Path) -> dict[str, float]:
        return _load(self.run_path)(config, folder)

    def cpus_per_trial(self, config: dict[str, Any]) -> float:
        """CPUs to reserve for one trial: its Ray Train workers when it has some (the trial's own
        process then only waits on them), else the trial process itself."""
        workers = int(config.get("num_workers", 0) or 0)
        if workers:
            return workers * float(config.get("cpus_per_worker", 1.0))
        return 1.0


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {prefix + k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def finished_results(folder: Path, config_dict: dict[str, Any]) -> dict[str, Any] | None:
    """``folder/results.json`` when it was written for exactly ``config_dict``, else None: a resumed
    sweep (``--resume``) may start a trial that had finished (Tune re-launched one whose finish its
    saved experiment state had not yet recorded; ``sweeps.run`` copies its earlier folder back first);
    the trial then returns what it wrote, not a rerun."""
    import json

    path = folder / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    same = {k: v for k, v in results.get("config", {}).items() if k != "output"} == {
        k: v for k, v in config_dict.items() if k != "output"
    }  # the output folder moves: Tune stages each launch of a trial in its own folder
    return results if same else None


def run_cfp_trial(config: dict[str, Any], folder: Path) -> dict[str, float]:
    from fairrec_ray.cfp.config import CFPConfig
    from fairrec_ray.cfp.job import run_cfp
    from fairrec_ray.config import config_to_dict

    job_config = build_config(CFPConfig, {**config, "output": str(folder / "cfp")}, "sweep trial")
    results = finished_results(folder / "cfp", config_to_dict(job_config)) or run_cfp(job_config)
    return {
        **_scalars(results["final_valid"], VALID),
        **_scalars(results["final_test"], TEST),
        **_scalars(results["before"], "backbone_" + TEST),
        **_scalars((results.get("control") or {}).get("after", {}), "control_" + TEST),
    }


def run_fcpo_trial(config: dict[str, Any], folder: Path) -> dict[str, float]:
    from fairrec_ray.fcpo.job import FCPOJobConfig, run_fcpo

    results = run_fcpo(build_config(FCPOJobConfig, {**config, "output": str(folder / "fcpo")}, "sweep trial"))
    return {
        **_scalars(results["final_valid"], VALID),
        **_scalars(results["final_test"], TEST),
        "cost_limit": float(results["cost_limit"]),
    }


CFP_METRICS = ("probe_auc", "probe_auc_ovr", "probe_leak", "encoder_probe_auc", "encoder_probe_leak", *RANKING_KEYS)
FCPO_METRICS = (
    "recall@10", "precision@10", "f1@10", "ndcg@10", "hit@10", "gini", "popularity_rate", "reward", "cost",
    "cost_discounted", "violation_rate",
)  # fmt: skip

JOBS: dict[str, SweepJob] = {
    "cfp": SweepJob("cfp", "fairrec_ray.cfp.config:CFPConfig", "fairrec_ray.sweeps.jobs:run_cfp_trial", CFP_METRICS),
    "fcpo": SweepJob(
        "fcpo", "fairrec_ray.fcpo.job:FCPOJobConfig", "fairrec_ray.sweeps.jobs:run_fcpo_trial", FCPO_METRICS
    ),
}

TrialFn = Callable[[dict[str, Any], Path], dict[str, float]]

"""Ray Tune sweeps over the fairness knobs and the fairness-accuracy Pareto front.

A sweep file (``tune_configs/*.yaml``) names a job, the two objectives and a search space over
the job's own config fields::

    job: fcpo
    accuracy: recall@10          # direction comes from fairrec_ray.metrics.METRICS
    fairness: popularity_rate
    base: {dataset: synthetic, iterations: 5}
    search:
      alpha: {type: grid, values: [0.1, 0.25, 0.5, 1.0]}

Search keys and base keys are checked against the job's config dataclass before anything runs, so
a renamed field breaks the sweep loudly instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fairrec_ray.config import build_config, read_yaml
from fairrec_ray.errors import ConfigError
from fairrec_ray.metrics import metric_mode, pareto_front

# job name -> (module, config dataclass, function(config dict) -> flat final metrics)
JOBS: dict[str, tuple[str, str, str]] = {
    "fcpo": ("fairrec_ray.sweep_trials", "FCPOJobConfig", "run_fcpo_trial"),
    "cfp": ("fairrec_ray.sweep_trials", "CFPConfig", "run_cfp_trial"),
}
SPACE_TYPES = ("grid", "choice", "uniform", "loguniform", "randint")


@dataclass
class SweepConfig:
    job: Literal["fcpo", "cfp"] = field(metadata={"help": "which job each trial runs"})
    accuracy: str = field(metadata={"help": "accuracy metric reported by the job (e.g. hit@10)"})
    fairness: str = field(metadata={"help": "unfairness metric reported by the job (e.g. auc)"})
    search: dict[str, Any] = field(default_factory=dict, metadata={"help": "field -> {type, values|low/high}"})
    base: dict[str, Any] = field(default_factory=dict, metadata={"help": "fixed job config keys"})
    searcher: Literal["grid", "optuna"] = "grid"
    num_samples: int = 1
    max_concurrent_trials: int = 1
    cpus_per_trial: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (self.accuracy, self.fairness):
            try:
                metric_mode(name)
            except KeyError as exc:
                raise ConfigError(exc.args[0]) from None
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.max_concurrent_trials < 1:
            raise ConfigError(f"max_concurrent_trials must be >= 1, got {self.max_concurrent_trials}")
        if not self.search:
            raise ConfigError("search: give at least one field to sweep")
        for key, spec in self.search.items():
            validate_space(key, spec)
        if self.searcher == "grid" and any(s["type"] != "grid" for s in self.search.values()):
            raise ConfigError("searcher 'grid' needs every search entry to be {type: grid}; use searcher: optuna")
        if self.searcher == "optuna" and any(s["type"] == "grid" for s in self.search.values()):
            raise ConfigError("searcher 'optuna' cannot sample {type: grid}; use choice")


def validate_space(key: str, spec: Any) -> None:
    if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
        raise ConfigError(f"search.{key}: expected {{type: one of {list(SPACE_TYPES)}, ...}}, got {spec!r}")
    kind = spec["type"]
    if kind in ("grid", "choice"):
        if not isinstance(spec.get("values"), list) or not spec["values"]:
            raise ConfigError(f"search.{key}: type {kind} needs a non-empty list 'values'")
    else:
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, (int, float)) for v in (low, high)) or not low < high:
            raise ConfigError(f"search.{key}: type {kind} needs numbers low < high, got low={low!r} high={high!r}")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(f"search.{key}: loguniform needs low > 0, got {low}")


def to_tune_space(search: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Translate our YAML space into Tune's sampling objects (Tune itself only knows grid_search)."""
    from ray import tune

    build = {
        "grid": lambda s: tune.grid_search(s["values"]),
        "choice": lambda s: tune.choice(s["values"]),
        "uniform": lambda s: tune.uniform(s["low"], s["high"]),
        "loguniform": lambda s: tune.loguniform(s["low"], s["high"]),
        "randint": lambda s: tune.randint(int(s["low"]), int(s["high"])),
    }
    return {key: build[spec["type"]](spec) for key, spec in search.items()}


def job_parts(job: str) -> tuple[type, Any]:
    module_name, config_name, fn_name = JOBS[job]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, fn_name)


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    raw = read_yaml(path)
    for key, value in (overrides or {}).items():
        section, dot, leaf = key.partition(".")
        if dot and section in ("base", "search"):  # base.iterations=2 reaches into a section
            raw.setdefault(section, {})
            raw[section] = {**raw[section], leaf: value}
        else:
            raw[key] = value
    sweep = build_config(SweepConfig, raw, str(path))
    config_cls, _ = job_parts(sweep.job)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for section in ("search", "base"):
        unknown = sorted(set(getattr(sweep, section)) - fields)
        if unknown:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: {section}.{unknown[0]} is not a field of {config_cls.__name__}; known: {known}")
    return sweep


def pareto_table(results: pd.DataFrame, accuracy: str, fairness: str) -> pd.DataFrame:
    """Rows with both objectives, sorted by accuracy, with a boolean ``pareto`` column marking the
    non-dominated trials (directions from the metric registry)."""
    missing = [m for m in (accuracy, fairness) if m not in results.columns]
    if missing:
        raise ConfigError(f"sweep results lack metric(s) {missing}; the job reports: {', '.join(results.columns)}")
    table = results.dropna(subset=[accuracy, fairness]).copy()
    points = table[[accuracy, fairness]].to_numpy(dtype=float)
    maximize = [metric_mode(accuracy) == "max", metric_mode(fairness) == "max"]
    table["pareto"] = pareto_front(points, maximize) if len(table) else np.zeros(0, dtype=bool)
    return table.sort_values(accuracy, ascending=not maximize[0]).reset_index(drop=True)


def plot_front(table: pd.DataFrame, accuracy: str, fairness: str, path: Path) -> None:
    """Scatter of every trial with the Pareto front drawn as a line (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    ax.scatter(table[fairness], table[accuracy], c="#9aa5b1", label="trial")
    front = table[table["pareto"]].sort_values(fairness)
    ax.plot(front[fairness], front[accuracy], "o-", c="#c0392b", label="Pareto front")
    ax.set_xlabel(f"{fairness} ({metric_mode(fairness)} is better)")
    ax.set_ylabel(f"{accuracy} ({metric_mode(accuracy)} is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)

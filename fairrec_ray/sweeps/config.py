"""Sweep files: which job, which two objectives, fixed keys and a search space over the job's own
config fields::

    job: fcpo
    accuracy: recall@10          # direction comes from fairrec_ray.metrics.METRICS
    fairness: popularity_rate
    base: {dataset: synthetic, iterations: 5}
    search:
      alpha: {type: grid, values: [0.1, 0.25, 0.5, 1.0]}

Everything is checked before a trial starts: search and base keys against the job's config
dataclass (a renamed field breaks the sweep loudly), the objectives against the metrics the job
reports (``jobs.JOBS``), and the space's shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fairrec_ray.config import build_config, read_yaml
from fairrec_ray.errors import ConfigError
from fairrec_ray.metrics import metric_mode
from fairrec_ray.sweeps.jobs import JOBS

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
    max_concurrent_trials: int = field(default=1, metadata={"help": "at most this many trials at once (0: no cap)"})
    scheduler: Literal["fifo", "asha"] = field(
        default="fifo", metadata={"help": "fifo only for now: trials report once, at the end, so ASHA could not act"}
    )
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (self.accuracy, self.fairness):
            try:
                metric_mode(name)
            except KeyError as exc:
                raise ConfigError(exc.args[0]) from None
            if name not in JOBS[self.job].metrics:
                raise ConfigError(
                    f"{name!r}: job {self.job!r} does not report it; it reports {', '.join(JOBS[self.job].metrics)}"
                )
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.scheduler != "fifo":  # it used to be accepted and silently ignored
            raise ConfigError(
                f"scheduler: got {self.scheduler!r}; expected 'fifo' (CFP and FCPO trials report once, at the end, "
                "so ASHA would have nothing to stop trials on)"
            )
        if self.max_concurrent_trials < 0:
            raise ConfigError(f"max_concurrent_trials must be >= 0, got {self.max_concurrent_trials}")
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
        if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
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


# Folder-valued job keys: made absolute when the sweep is loaded (trials run in their own folders).
PATH_KEYS = ("data_dir", "backbone", "backbone_cache", "storage_path")


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """The sweep file plus ``overrides``; relative ``base`` paths (``PATH_KEYS``) resolve against
    the current folder."""
    raw = read_yaml(path)
    for key, value in (overrides or {}).items():
        section, dot, leaf = key.partition(".")
        if dot and section in ("base", "search"):  # base.iterations=2 reaches into a section
            raw.setdefault(section, {})
            raw[section] = {**raw[section], leaf: value}
        else:
            raw[key] = value
    sweep = build_config(SweepConfig, raw, str(path))
    for key in PATH_KEYS:
        if isinstance(sweep.base.get(key), str):
            sweep.base[key] = str(Path(sweep.base[key]).resolve())
    config_cls = JOBS[sweep.job].config_class()
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for section in ("search", "base"):
        unknown = sorted(set(getattr(sweep, section)) - fields)
        if unknown:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: {section}.{unknown[0]} is not a field of {config_cls.__name__}; known: {known}")
    try:  # the fixed part must be a valid job config on its own (search keys are checked per trial)
        build_config(config_cls, {k: v for k, v in sweep.base.items()}, f"{path}: base")
    except ConfigError as exc:
        if not any(key in str(exc) for key in sweep.search):
            raise
    return sweep

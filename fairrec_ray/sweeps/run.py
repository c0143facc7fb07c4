"""Run a sweep on Ray Tune and write ``trials.csv``, ``pareto.json`` and ``pareto.png``.

Each trial runs the job's Python entry point (``jobs.JOBS``) in its own Tune trial folder. A trial
whose job has Ray Train workers (``num_workers >= 1``) starts them from inside the trial (Train in
Tune, the Ray 2.60 way): the trial reserves one CPU for its driver-side work and the number of
trials running at once is capped so every running trial's workers fit in the cluster — trials run
side by side on a cluster, one at a time on a laptop. ``resume=True`` restores a stopped sweep from
its folder; finished trials are not run again.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from fairrec_ray.cli import write_json_atomic
from fairrec_ray.console import Progress, quiet_ray
from fairrec_ray.errors import FairrecError
from fairrec_ray.metrics import metric_mode
from fairrec_ray.sweeps.config import SweepConfig, to_tune_space
from fairrec_ray.sweeps.jobs import JOBS, TEST, VALID
from fairrec_ray.sweeps.pareto import pareto_table, plot_front, setting_label

RUN_NAME = "sweep"


def _trial(config: dict[str, Any], job: str, storage: str) -> None:
    from ray import tune

    folder = Path(tune.get_context().get_trial_dir())  # Tune's local staging copy of the trial folder
    stored = Path(storage) / folder.name  # the trial folder in the sweep's --output
    if stored != folder and stored.is_dir():  # a re-launched trial: what it wrote before comes back
        shutil.copytree(stored, folder, dirs_exist_ok=True)
    tune.report(JOBS[job].run(config, folder))


def planned_trials(sweep: SweepConfig) -> int:
    grid = [len(s["values"]) for s in sweep.search.values() if s["type"] == "grid"]
    return math.prod(grid) * sweep.num_samples


def concurrency(sweep: SweepConfig, cluster_cpus: float) -> int:
    """At most ``sweep.max_concurrent_trials`` trials, and no more than the cluster's CPUs hold when
    each trial needs its driver CPU plus its workers' CPUs."""
    need = 1.0 + (JOBS[sweep.job].cpus_per_trial(sweep.base) if int(sweep.base.get("num_workers", 0) or 0) else 0.0)
    fits = max(1, int(cluster_cpus // need))
    return min(fits, sweep.max_concurrent_trials) if sweep.max_concurrent_trials else fits


def _progress_callback(total: int) -> Any:
    from ray import tune

    class TrialProgress(tune.Callback):
        """One progress line per finished trial (driver side)."""

        def __init__(self) -> None:
            self.progress = Progress("sweep", total=total, unit="trial")
            self.done = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.done += 1
            self.progress.update(self.done, trial=trial.trial_id, **_objectives(trial.last_result or {}))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.done += 1
            self.progress.update(self.done, trial=trial.trial_id, status="ERROR (see the sweep's log)")

    return TrialProgress()


def _objectives(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if isinstance(k, str) and k.startswith((VALID, TEST))}


def _tuner(sweep: SweepConfig, output: Path, resume: bool) -> Any:
    import ray
    from ray import tune

    quiet_ray()
    job = JOBS[sweep.job]
    resources = {"cpu": 1.0 if int(sweep.base.get("num_workers", 0) or 0) else job.cpus_per_trial(sweep.base)}
    folder = output.resolve() / RUN_NAME
    trainable = tune.with_resources(tune.with_parameters(_trial, job=sweep.job, storage=str(folder)), resources)
    if resume:
        if not tune.Tuner.can_restore(str(folder)):
            raise FairrecError(f"{output}: no sweep to resume there (no {RUN_NAME}/ folder with Tune's state)")
        return tune.Tuner.restore(str(folder), trainable=trainable, resume_errored=True)
    if folder.exists():
        raise FairrecError(f"{output}: holds a sweep already; add --resume to continue it, or choose another --output")
    search_alg = None
    if sweep.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(
            metric=[VALID + sweep.accuracy, VALID + sweep.fairness],
            mode=[metric_mode(sweep.accuracy), metric_mode(sweep.fairness)],
            seed=sweep.seed,
        )
    return tune.Tuner(
        trainable,
        param_space={**sweep.base, **to_tune_space(sweep.search)},
        tune_config=tune.TuneConfig(
            num_samples=sweep.num_samples,
            max_concurrent_trials=concurrency(sweep, ray.cluster_resources().get("CPU", 1.0)),
            search_alg=search_alg,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=RUN_NAME,
            storage_path=str(output.resolve()),
            verbose=0,
            callbacks=[_progress_callback(planned_trials(sweep))],
        ),
    )


def run_sweep(sweep: SweepConfig, output: Path, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) the sweep; returns the ``pareto.json`` payload."""
    results = _tuner(sweep, output, resume).fit()
    frame = results.get_dataframe().rename(columns=lambda c: re.sub(r"^config/", "", c))
    errors = [str(r.error) for r in results if r.error]
    if errors and len(errors) == len(results):
        reason = errors[0].strip().splitlines()[-1]
        raise FairrecError(f"all {len(errors)} sweep trials failed; the first said: {reason}")
    table = pareto_table(frame, sweep.accuracy, sweep.fairness)
    objectives = [p + m for m in (sweep.accuracy, sweep.fairness) for p in (VALID, TEST)]
    keep = [*sweep.search, *objectives, "pareto", *[c for c in ("trial_id",) if c in table.columns]]
    table = table[[c for c in keep if c in table.columns]]
    output.mkdir(parents=True, exist_ok=True)
    tmp = output / ".trials.csv.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(output / "trials.csv")
    plot_front(table, sweep.accuracy, sweep.fairness, list(sweep.search), output / "pareto.png")
    front = table[table["pareto"]]
    summary = {
        "job": sweep.job,
        "objectives": {sweep.accuracy: metric_mode(sweep.accuracy), sweep.fairness: metric_mode(sweep.fairness)},
        "selected_on": "validation (valid_* columns); test_* reported for the chosen trials only",
        "trials": len(table),
        "failed_trials": len(errors),
        "pareto": [{"settings": setting_label(row, list(sweep.search)), **_row(row)} for _, row in front.iterrows()],
    }
    write_json_atomic(output / "pareto.json", summary)
    return summary


def _row(row: pd.Series) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k != "pareto"}

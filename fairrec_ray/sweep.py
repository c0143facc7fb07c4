"""``python -m fairrec_ray.sweep --config tune_configs/X.yaml [--output DIR] [key=value ...]``.

Runs one Tune trial per point of the search space (each trial runs the job's Python entry point),
then writes ``trials.csv``, ``pareto.json`` (the non-dominated trials) and ``pareto.png``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fairrec_ray.cli import ArgumentParser, init_ray, run_main, write_json_atomic
from fairrec_ray.config import parse_overrides
from fairrec_ray.errors import FairrecError
from fairrec_ray.metrics import metric_mode
from fairrec_ray.sweeps import SweepConfig, job_parts, load_sweep, pareto_table, plot_front, to_tune_space


def _trial(config: dict[str, Any], job: str) -> None:
    from ray import tune

    _, run_trial = job_parts(job)
    metrics = run_trial(config)
    tune.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})


def run_sweep(sweep: SweepConfig, output: Path) -> dict[str, Any]:
    from ray import tune

    search_alg = None
    if sweep.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(
            metric=[sweep.accuracy, sweep.fairness],
            mode=[metric_mode(sweep.accuracy), metric_mode(sweep.fairness)],
            seed=sweep.seed,
        )
    trainable = tune.with_resources(tune.with_parameters(_trial, job=sweep.job), {"cpu": sweep.cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={**sweep.base, **to_tune_space(sweep.search)},
        tune_config=tune.TuneConfig(
            num_samples=sweep.num_samples,
            max_concurrent_trials=sweep.max_concurrent_trials,
            search_alg=search_alg,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(name="sweep", storage_path=str(output.resolve()), verbose=1),
    )
    results = tuner.fit()
    frame = results.get_dataframe()
    frame = frame.rename(columns=lambda c: re.sub(r"^config/", "", c))
    errors = [str(r.error) for r in results if r.error]
    if errors and len(errors) == len(results):
        reason = errors[0].strip().splitlines()[-1]
        raise FairrecError(f"all {len(errors)} sweep trials failed; the first said: {reason}")
    table = pareto_table(frame, sweep.accuracy, sweep.fairness)
    keep = [*sweep.search, sweep.accuracy, sweep.fairness, "pareto"]
    table = table[keep + [c for c in ("training_iteration", "trial_id") if c in table.columns]]
    output.mkdir(parents=True, exist_ok=True)
    tmp = output / ".trials.csv.tmp"
    table.to_csv(tmp, index=False)
    tmp.replace(output / "trials.csv")
    plot_front(table, sweep.accuracy, sweep.fairness, output / "pareto.png")
    summary = {
        "job": sweep.job,
        "objectives": {sweep.accuracy: metric_mode(sweep.accuracy), sweep.fairness: metric_mode(sweep.fairness)},
        "trials": len(table),
        "failed_trials": len(errors),
        "pareto": table[table["pareto"]].to_dict(orient="records"),
    }
    write_json_atomic(output / "pareto.json", summary)
    return summary


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="python -m fairrec_ray.sweep", description=__doc__)
    parser.add_argument("--config", required=True, metavar="SWEEP.yaml")
    parser.add_argument("--output", default="runs/sweep", help="folder for trials.csv, pareto.json, pareto.png")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="logical CPUs of a local Ray")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    sweep = load_sweep(args.config, parse_overrides(args.overrides))
    init_ray(args.address, num_cpus=args.num_cpus)
    summary = run_sweep(sweep, Path(args.output))
    print(f"{summary['trials']} trials, {len(summary['pareto'])} on the Pareto front -> {args.output}/pareto.json")
    for row in summary["pareto"]:
        print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    run_main(main)

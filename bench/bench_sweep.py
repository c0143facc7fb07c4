"""Sweep benchmark: a Tune sweep of FCPO trials vs the same trials in a plain Python loop.

    python bench/bench_sweep.py [--alphas 0.1,0.25,0.5,1.0] [--iterations 3] [--users 150]

Prints one JSON object: wall time and trials/min for both, Tune's overhead per trial, peak RSS, and
the Pareto front found (recall@10 vs popularity rate) — identical trials must give the same front.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from fairrec_ray.cli import init_ray
from fairrec_ray.sweeps import load_sweep, pareto_table
from fairrec_ray.sweeps.jobs import run_fcpo_trial
from fairrec_ray.sweeps.run import run_sweep

CONFIG = Path(__file__).resolve().parents[1] / "tune_configs" / "fcpo_alpha.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alphas", default="0.1,0.25,0.5,1.0")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--users", type=int, default=150)
    args = parser.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")]
    base = {"iterations": args.iterations, "synthetic_users": args.users, "synthetic_items": 200}
    overrides = {"search.alpha": {"type": "grid", "values": alphas}, **{f"base.{k}": v for k, v in base.items()}}
    sweep = load_sweep(CONFIG, overrides)
    init_ray(num_cpus=4)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = run_sweep(sweep, Path(tmp) / "tune")
        tune_s = time.perf_counter() - start
        tune_front = sorted(row["alpha"] for row in summary["pareto"])

        rows = []
        start = time.perf_counter()
        for alpha in alphas:  # the baseline: the same trials, one after the other, no Tune
            folder = Path(tmp) / f"loop_alpha_{alpha}"
            folder.mkdir()
            metrics = run_fcpo_trial({**sweep.base, "alpha": alpha}, folder)
            rows.append({"alpha": alpha, **metrics})
        loop_s = time.perf_counter() - start
    loop_table = pareto_table(pd.DataFrame(rows), sweep.accuracy, sweep.fairness)
    print(
        json.dumps(
            {
                "trials": len(alphas),
                "fcpo_iterations_per_trial": args.iterations,
                "synthetic_users": args.users,
                "tune_wall_s": round(tune_s, 2),
                "plain_loop_wall_s": round(loop_s, 2),
                "tune_trials_per_min": round(60 * len(alphas) / tune_s, 2),
                "plain_loop_trials_per_min": round(60 * len(alphas) / loop_s, 2),
                "tune_overhead_s_per_trial": round((tune_s - loop_s) / len(alphas), 2),
                "pareto_alphas_tune": tune_front,
                "pareto_alphas_loop": sorted(loop_table.loc[loop_table["pareto"], "alpha"]),
                "peak_rss_mb_driver": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

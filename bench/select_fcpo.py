"""Candidate settings for FCPO's defaults, judged on ML-100K *validation* data only (never test).

    python bench/select_fcpo.py NAME [--iterations 50] [--data-dir DIR] [key=value ...]

Runs the unconstrained setting and alpha in {1, 0.5, 0.25, 0.1} with the given ``FCPOJobConfig``
overrides, and prints one line per alpha and one JSON object: the sampling policy's training cost
J_C per iteration, its mean over the last 5 iterations / d, and the final policy's validation
metrics. The selection rule (README, FCPO) is applied to these outputs; the chosen setting is
then evaluated on test once, by ``bench_fcpo.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from fairrec_ray.config import build_config, parse_overrides  # noqa: E402
from fairrec_ray.fcpo import keys  # noqa: E402
from fairrec_ray.fcpo.evaluation import learner_policy, policy_metrics  # noqa: E402
from fairrec_ray.fcpo.job import FCPOJobConfig, build_job_env_data, to_algorithm_config  # noqa: E402

ALPHAS = (None, 1.0, 0.5, 0.25, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()

    import ray

    overrides = parse_overrides(args.overrides)
    base = {"dataset": "movielens-100k", "data_dir": args.data_dir, "num_env_runners": 0, **overrides}
    data = build_job_env_data(build_config(FCPOJobConfig, base, args.name))
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=512 * 1024**2)
    out: dict = {"name": args.name, "overrides": overrides, "iterations": args.iterations, "runs": {}}
    for alpha in ALPHAS:
        job = build_config(FCPOJobConfig, {**base, "alpha": alpha}, args.name)
        config = to_algorithm_config(job, data)
        start = time.perf_counter()
        config.validate()
        algo = config.build_algo()
        history = []
        try:
            for _ in range(args.iterations):
                r = algo.train()
                learner = r["learners"]["default_policy"]
                history.append(
                    [r[keys.EPISODE_REWARD_MEAN], r[keys.EPISODE_COST_DISCOUNTED], int(learner[keys.CPO_CASE])]
                )
            d = config.cost_limit
            valid = policy_metrics(
                data, learner_policy(algo), job.top_k, job.horizon, d, job.gamma_c, at=(10, 100), split="valid"
            )
        finally:
            algo.stop()
        h = np.array(history)
        name = "none" if alpha is None else str(alpha)
        out["runs"][name] = {
            "d": d,
            "offset": config.prior_exposure_offset,
            "seconds": time.perf_counter() - start,
            "history": history,
            "valid": valid,
            "train_cost_it50_over_d": h[-1, 1] / d,
            "train_cost_last5_over_d": h[-5:, 1].mean() / d,
        }
        print(
            f"[{args.name}] alpha={name} d={d:.2f} offset={config.prior_exposure_offset:.3f} "
            f"train cost first {h[0, 1]:.1f} last5/d {h[-5:, 1].mean() / d:.3f} | valid recall@10 "
            f"{valid['recall@10']:.4f} ndcg@10 {valid['ndcg@10']:.4f} cost/d {valid['cost_discounted'] / d:.3f} "
            f"gini {valid['gini']:.3f} ({time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.1f})",
            file=sys.stderr,
            flush=True,
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""FCPO benchmark on real MovieLens-100K: quality vs alpha, baselines, throughput.

    python bench/bench_fcpo.py --data-dir ../shared/data/ml-100k --iterations 40 [--parts quality,throughput]

Prints one JSON object:

* ``env_steps_per_s``: ``RecVectorEnv`` stepping all users at once, one torch thread;
* ``quality``: per setting (unconstrained = CPO with d = inf, alpha in {0.1, 0.25, 0.5, 1.0}) the
  test metrics after ``--iterations`` FCPO iterations, plus the *training* policy's discounted
  episode cost J_C (mean of the last 5 iterations) vs d; ``baselines``: MostPop, MF and MF fairly
  re-ranked to each alpha's popular share;
* ``throughput``: transitions/s of a whole RLlib training iteration with 0/1/2 EnvRunners vs the
  single-process per-user loop of ``reference_fcpo_loop.py`` (same MDP, same CPO math).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from reference_fcpo_loop import ReferenceAgent, reference_iteration  # noqa: E402

from fairrec_ray.fcpo import keys  # noqa: E402
from fairrec_ray.fcpo.cpo import cost_limit_from_alpha  # noqa: E402
from fairrec_ray.fcpo.embeddings import binary_matrix, cached_factorize  # noqa: E402
from fairrec_ray.fcpo.env import RecVectorEnv  # noqa: E402
from fairrec_ray.fcpo.evaluation import fixed_score_rollout, learner_policy, policy_metrics, rollout_metrics  # noqa: E402
from fairrec_ray.fcpo.job import FCPOJobConfig, build_job_env_data, to_algorithm_config  # noqa: E402

ALPHAS = (None, 1.0, 0.5, 0.25, 0.1)
AT = (10, 100)


def env_throughput(data, steps: int = 30) -> float:
    torch.set_num_threads(1)
    env = RecVectorEnv(data, num_envs=data.n_users)
    actions = np.random.default_rng(0).normal(size=(env.num_envs, data.action_dim)).astype(np.float32)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(actions)  # autoreset every T steps is included
    rate = steps * env.num_envs / (time.perf_counter() - start)
    torch.set_num_threads(os.cpu_count() or 1)
    return rate


def baselines(data, job: FCPOJobConfig) -> dict:
    train_lists = [
        np.concatenate(
            [s, data.train_positives.items[data.train_positives.indptr[u] : data.train_positives.indptr[u + 1]]]
        )
        for u, s in enumerate(data.train_start)
    ]
    users, items = cached_factorize(
        binary_matrix(data.n_users, data.n_items, train_lists), dim=job.emb_dim, reg=10.0, seed=job.seed
    )
    counts = data.train_item_counts().astype(np.float64)
    most_pop = np.tile(counts, (data.n_users, 1))
    mf = users @ items.T
    out = {}
    for name, scores, share in (("MostPop", most_pop, None), ("MF", mf, None)):
        out[name] = rollout_metrics(
            fixed_score_rollout(data, scores, job.top_k, job.horizon, share, job.gamma_c), data, np.inf, AT
        )
    for alpha in ALPHAS[1:]:
        share = alpha / (1 + alpha)
        d = cost_limit_from_alpha(alpha, job.top_k, job.horizon, job.gamma_c)
        roll = fixed_score_rollout(data, mf, job.top_k, job.horizon, share, job.gamma_c)
        out[f"MF-rerank alpha={alpha}"] = rollout_metrics(roll, data, d, AT)
    return out


def quality(data, job: FCPOJobConfig, iterations: int, alphas=ALPHAS, out: dict | None = None, save=None) -> dict:
    out = {} if out is None else out
    for alpha in alphas:
        job_a = FCPOJobConfig(**{**job.__dict__, "alpha": alpha})
        config = to_algorithm_config(job_a, data)
        algo = config.build_algo()
        history = []
        start = time.perf_counter()
        try:
            for _ in range(iterations):
                r = algo.train()
                history.append((r[keys.EPISODE_REWARD_MEAN], r[keys.EPISODE_COST_DISCOUNTED]))
            metrics = policy_metrics(
                data, learner_policy(algo), job.top_k, job.horizon, config.cost_limit, job.gamma_c, AT
            )
        finally:
            algo.stop()
        tail = np.array(history[-5:])
        name = "unconstrained" if alpha is None else f"alpha={alpha}"
        out[name] = {
            **metrics,
            "train_episode_reward_last5": float(tail[:, 0].mean()),
            "train_cost_discounted_last5": float(tail[:, 1].mean()),
            "train_seconds": time.perf_counter() - start,
        }
        print(
            f"[bench] {name}: {json.dumps({k: round(v, 4) for k, v in out[name].items()})}", file=sys.stderr, flush=True
        )
    return out


def throughput(data, job: FCPOJobConfig, iterations: int = 4) -> dict:
    out: dict = {}
    for runners in (0, 1, 2):
        algo = to_algorithm_config(
            FCPOJobConfig(**{**job.__dict__, "num_env_runners": runners, "alpha": 0.5}), data
        ).build_algo()
        try:
            algo.train()  # warm-up
            times = []
            for _ in range(iterations):
                tick = time.perf_counter()
                algo.train()
                times.append(time.perf_counter() - tick)
        finally:
            algo.stop()
        best = min(times)
        out[f"rllib_env_runners={runners}"] = {
            "iteration_s_best": best,
            "iteration_s_median": float(np.median(times)),
            "transitions_per_s": data.n_users * job.horizon / best,
        }
    agent = ReferenceAgent(data.n_start * data.dim + 1, data.action_dim)
    d = cost_limit_from_alpha(0.5, job.top_k, job.horizon, job.gamma_c)
    ref = [reference_iteration(agent, data, job.top_k, job.horizon, d, max_kl=job.max_kl) for _ in range(2)]
    best_ref = min(ref, key=lambda r: r["iteration_s"])
    out["reference_loop"] = {**best_ref, "transitions_per_s": best_ref["transitions"] / best_ref["iteration_s"]}
    out["speedup_vs_reference"] = {
        k: v["transitions_per_s"] / out["reference_loop"]["transitions_per_s"]
        for k, v in out.items()
        if k.startswith("rllib")
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"))
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--max-kl", type=float, default=FCPOJobConfig.max_kl)
    parser.add_argument("--emb-dim", type=int, default=FCPOJobConfig.emb_dim)
    parser.add_argument("--parts", default="env,baselines,throughput,quality")
    parser.add_argument("--alphas", default="none,1.0,0.5,0.25,0.1", help="quality settings; none = unconstrained")
    parser.add_argument("--out", default=None, help="also write the (partial) report here after every part")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="FCPOJobConfig fields, e.g. critic_iters=2")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    import ray

    from fairrec_ray.config import build_config as build_job_config
    from fairrec_ray.config import parse_overrides

    fields = {"dataset": "movielens-100k", "data_dir": args.data_dir, "max_kl": args.max_kl, "emb_dim": args.emb_dim}
    job = build_job_config(FCPOJobConfig, {**fields, **parse_overrides(args.overrides)}, "bench_fcpo")
    data = build_job_env_data(job)
    report: dict = {
        "dataset": "movielens-100k",
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_popular": int(data.popular.sum()),
        "settings": {
            "iterations": args.iterations, "max_kl": args.max_kl, "emb_dim": args.emb_dim, "top_k": job.top_k,
            "horizon": job.horizon, "gamma_c": job.gamma_c, "positives": "rating >= 4", "cpus": os.cpu_count(),
            "overrides": args.overrides,
        },
    }  # fmt: skip

    def save() -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=1))

    if "env" in parts:
        report["env_steps_per_s"] = env_throughput(data)
        save()
    if "baselines" in parts:
        report["baselines"] = baselines(data, job)
        save()
    if parts & {"quality", "throughput"}:
        ray.init(num_cpus=4, include_dashboard=False, object_store_memory=512 * 1024**2, log_to_driver=False)
    if "throughput" in parts:
        report["throughput"] = throughput(data, job)
        print(f"[bench] throughput: {json.dumps(report['throughput'])}", file=sys.stderr, flush=True)
        save()
    if "quality" in parts:
        alphas = tuple(None if a == "none" else float(a) for a in args.alphas.split(","))
        report["quality"] = {}
        quality(data, job, args.iterations, alphas, report["quality"], save)
    save()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""FCPO benchmark on real MovieLens-100K: quality vs alpha, baselines, throughput.

    python bench/bench_fcpo.py --data-dir ../shared/data/ml-100k [--iterations 50] [--parts ...] [key=value ...]

Prints one JSON object (``--out`` also writes it after every part), with the load average:

* ``env_steps_per_s``: ``RecVectorEnv`` stepping all users at once, one torch thread;
* ``baselines``: MostPop, MF and MF fairly re-ranked to each alpha's popular share (validation and test);
* ``quality``: per setting (unconstrained, alpha in {1, 0.5, 0.25, 0.1}) with the job's defaults
  (``FCPOJobConfig``, i.e. the validation-selected settings) and ``--iterations`` iterations: the
  sampling policy's training cost J_C / d per iteration, and the validation and test metrics of
  the final policy and of the starting one (the calibrated prior, before any CPO step);
* ``throughput``: seconds per training iteration and transitions/s, each repeated ``--repeats``
  times in this run: RLlib with 0 and 2 EnvRunners (our learner settings), RLlib at the
  reference's learner settings, and the per-user loop of ``reference_fcpo_loop.py`` at our learner
  settings ("matched") and at the reference's ("reference").
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

from reference_fcpo_loop import LEARNER_OURS, LEARNER_REFERENCE, ReferenceAgent, reference_iteration  # noqa: E402

from fairrec_ray.config import build_config, parse_overrides  # noqa: E402
from fairrec_ray.fcpo import keys  # noqa: E402
from fairrec_ray.fcpo.cpo import cost_limit_from_alpha  # noqa: E402
from fairrec_ray.fcpo.embeddings import binary_matrix, cached_factorize  # noqa: E402
from fairrec_ray.fcpo.env import RecVectorEnv  # noqa: E402
from fairrec_ray.fcpo.evaluation import fixed_score_rollout, learner_policy, policy_metrics, rollout_metrics  # noqa: E402
from fairrec_ray.fcpo.job import FCPOJobConfig, build_job_env_data, to_algorithm_config  # noqa: E402

ALPHAS = (None, 1.0, 0.5, 0.25, 0.1)
AT = (10, 100)


def load() -> float:
    return round(os.getloadavg()[0], 2)


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
        binary_matrix(data.n_users, data.n_items, train_lists), dim=job.emb_dim, reg=job.mf_reg, seed=job.seed
    )
    most_pop = np.tile(data.train_item_counts().astype(np.float64), (data.n_users, 1))
    mf = users @ items.T
    out: dict = {}
    for split in ("valid", "test"):
        part = out.setdefault(split, {})
        for name, scores in (("MostPop", most_pop), ("MF", mf)):
            roll = fixed_score_rollout(data, scores, job.top_k, job.horizon, None, job.gamma_c, split)
            part[name] = rollout_metrics(roll, data, np.inf, AT, top_k=job.top_k)
        for alpha in ALPHAS[1:]:
            share = alpha / (1 + alpha)
            d = cost_limit_from_alpha(alpha, job.top_k, job.horizon, job.gamma_c)
            roll = fixed_score_rollout(data, mf, job.top_k, job.horizon, share, job.gamma_c, split)
            part[f"MF-rerank alpha={alpha}"] = rollout_metrics(roll, data, d, AT, top_k=job.top_k)
    return out


def quality(data, job: FCPOJobConfig, iterations: int, alphas, out: dict, save) -> dict:
    for alpha in alphas:
        job_a = FCPOJobConfig(**{**job.__dict__, "alpha": alpha})
        config = to_algorithm_config(job_a, data, num_env_runners=0)
        start = time.perf_counter()
        config.validate()  # feasible_init's calibration counts in the run's seconds
        algo = config.build_algo()
        history = []
        d, gamma_c = config.cost_limit, job.gamma_c
        try:
            start_policy = learner_policy(algo)  # the (calibrated) prior before any CPO step
            initial = {
                split: policy_metrics(data, start_policy, job.top_k, job.horizon, d, gamma_c, AT, split=split)
                for split in ("valid", "test")
            }
            for _ in range(iterations):
                r = algo.train()
                learner = r["learners"]["default_policy"]
                history.append(
                    [r[keys.EPISODE_REWARD_MEAN], r[keys.EPISODE_COST_DISCOUNTED], int(learner[keys.CPO_CASE])]
                )
            seconds = time.perf_counter() - start
            policy = learner_policy(algo)
            valid = policy_metrics(data, policy, job.top_k, job.horizon, d, gamma_c, AT, split="valid")
            test = policy_metrics(data, policy, job.top_k, job.horizon, d, gamma_c, AT, split="test")
        finally:
            algo.stop()
        h = np.array(history)
        name = "unconstrained" if alpha is None else f"alpha={alpha}"
        out[name] = {
            "cost_limit": d,
            "prior_exposure_offset": config.prior_exposure_offset,
            "train_cost_over_d": (h[:, 1] / d).tolist() if alpha is not None else None,
            "train_cost": h[:, 1].tolist(),
            "train_reward": h[:, 0].tolist(),
            "cpo_cases": h[:, 2].astype(int).tolist(),
            "final_valid": valid,
            "final_test": test,
            "initial_valid": initial["valid"],
            "initial_test": initial["test"],
            "seconds": seconds,
            "load": load(),
        }
        summary = {"train_cost_it_last/d": h[-1, 1] / d, "test_recall@10": test["recall@10"], "s": seconds}
        print(
            f"[bench] {name}: {json.dumps({k: round(v, 4) for k, v in summary.items()})}", file=sys.stderr, flush=True
        )
        save()
    return out


def _time(fn, repeats: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return {"iteration_s_best": min(times), "iteration_s_median": float(np.median(times)), "times": times}


def throughput(data, job: FCPOJobConfig, repeats: int) -> dict:
    """Seconds per iteration (alpha = 0.5); each variant timed in this run, one after the other."""
    job = FCPOJobConfig(**{**job.__dict__, "alpha": 0.5})
    transitions = data.n_users * job.horizon
    reference_learner = {"critic_iters": 20, "critic_minibatch_size": None, "fvp_subsample": 1.0}
    variants = {
        "rllib_env_runners=0": (0, {}),
        "rllib_env_runners=2": (2, {}),
        "rllib_env_runners=0_reference_learner": (0, reference_learner),
    }
    out: dict = {"load_before": load()}
    for name, (runners, override) in variants.items():
        algo = to_algorithm_config(FCPOJobConfig(**{**job.__dict__, **override}), data, runners).build_algo()
        try:
            out[name] = _time(algo.train, repeats)
        finally:
            algo.stop()
        out[name]["load"] = load()
    d = cost_limit_from_alpha(0.5, job.top_k, job.horizon, job.gamma_c)
    for settings in (LEARNER_OURS, LEARNER_REFERENCE):
        torch.set_num_threads(1)  # as our learner (learner_torch_threads = 1)
        agent = ReferenceAgent(data, settings, job.horizon)
        out[f"per_user_loop_{settings.name}_learner"] = _time(
            lambda agent=agent: reference_iteration(agent, data, job.top_k, job.horizon, d, job.gamma_c, job.max_kl),
            max(1, repeats // 2),
        )
        out[f"per_user_loop_{settings.name}_learner"]["load"] = load()
    for value in out.values():
        if isinstance(value, dict):
            value["transitions_per_s"] = transitions / value["iteration_s_median"]
    ours, ref = out["rllib_env_runners=0"], out["per_user_loop_reference_learner"]
    matched = out["per_user_loop_ours_learner"]
    out["speedup"] = {  # ratios of median seconds per iteration
        "vectorisation_at_our_learner_settings": matched["iteration_s_median"] / ours["iteration_s_median"],
        "vectorisation_at_reference_learner_settings": ref["iteration_s_median"]
        / out["rllib_env_runners=0_reference_learner"]["iteration_s_median"],
        "learner_settings_in_the_per_user_loop": ref["iteration_s_median"] / matched["iteration_s_median"],
        "total_vs_reference_loop": ref["iteration_s_median"] / ours["iteration_s_median"],
        "total_vs_reference_loop_2_env_runners": ref["iteration_s_median"]
        / out["rllib_env_runners=2"]["iteration_s_median"],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"))
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=6, help="timed iterations per throughput variant")
    parser.add_argument("--parts", default="env,baselines,throughput,quality")
    parser.add_argument("--alphas", default="none,1.0,0.5,0.25,0.1", help="quality settings; none = unconstrained")
    parser.add_argument("--out", default=None, help="also write the (partial) report here after every part")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="FCPOJobConfig fields, e.g. max_kl=0.05")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    import ray

    fields = {"dataset": "movielens-100k", "data_dir": args.data_dir}
    job = build_config(FCPOJobConfig, {**fields, **parse_overrides(args.overrides)}, "bench_fcpo")
    data = build_job_env_data(job)
    report: dict = {
        "dataset": "movielens-100k",
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_popular": int(data.popular.sum()),
        "n_valid_users": int(len(data.eval_users("valid"))),
        "settings": {
            "iterations": args.iterations, "overrides": args.overrides, "cpus": os.cpu_count(),
            "job": {k: v for k, v in job.__dict__.items() if k not in ("data_dir", "output")},
        },
        "load_start": load(),
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
        report["throughput"] = throughput(data, job, args.repeats)
        print(f"[bench] throughput: {json.dumps(report['throughput']['speedup'])}", file=sys.stderr, flush=True)
        save()
    if "quality" in parts:
        alphas = tuple(None if a == "none" else float(a) for a in args.alphas.split(","))
        report["quality"] = {}
        quality(data, job, args.iterations, alphas, report["quality"], save)
    report["load_end"] = load()
    save()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""The FCPO job: dataset -> env data -> FCPO on RLlib -> evaluations -> ``OUTPUT/results.json``.

``FCPOJobConfig`` = ``DataOptions`` (which dataset) + ``EnvDataOptions`` (split, item groups, MF)
+ ``FCPOSettings`` (every ``FCPOConfig`` knob) + the job's own fields; each field is a
``--flag``, a ``key=value``, a YAML key and a sweep key. ``run_fcpo`` reuses an initialised Ray
(e.g. inside a Tune trial) and reports progress through ``logging`` only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairrec_ray.config import config_to_dict
from fairrec_ray.data.options import DataOptions
from fairrec_ray.errors import ConfigError
from fairrec_ray.fcpo.settings import (
    ENV_DATA_KEYS,
    RECOMMENDATION_KEYS,
    TRAINING_KEYS,
    EnvDataOptions,
    FCPOSettings,
    pick,
)

log = logging.getLogger("fairrec_ray.fcpo.job")

RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoint"
EVAL_AT = (10,)  # ranking cut-offs besides K * T
# Default EnvRunners: rollout workers where the machine has cores for them besides the driver's
# central learner (README, FCPO: on 2 cores, 2 EnvRunners were slower than sampling in the driver).
AUTO_ENV_RUNNERS = 2
AUTO_MIN_CPUS = 4


def default_env_runners(free_cpus: float) -> int:
    """``num_env_runners = none``: ``AUTO_ENV_RUNNERS`` when Ray has ``AUTO_MIN_CPUS`` free CPUs."""
    return AUTO_ENV_RUNNERS if free_cpus >= AUTO_MIN_CPUS else 0


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FCPOJobConfig(FCPOSettings, EnvDataOptions, DataOptions):
    # data: FCPO's synthetic defaults (a small MovieLens-shaped set that trains in seconds)
    synthetic_users: int = field(default=300, metadata=_help("synthetic: users"))
    synthetic_items: int = field(default=400, metadata=_help("synthetic: items"))
    synthetic_interactions: float = field(default=40.0, metadata=_help("synthetic: mean interactions per user"))
    # job
    output: str = field(default="runs/fcpo", metadata=_help("output directory"))
    iterations: int = field(default=50, metadata=_help("training iterations (one episode per training user each)"))
    eval_every: int = field(default=10, metadata=_help("evaluation every N iterations (0: only at the end)"))
    num_env_runners: int | None = field(
        default=None,
        metadata=_help("RLlib EnvRunners, each sampling its shard of the users (0: sample in the driver; "
                       f"none: {AUTO_ENV_RUNNERS} when Ray has >= {AUTO_MIN_CPUS} free CPUs, else 0)"),
    )  # fmt: skip
    num_learners: int = field(default=0, metadata=_help("0 (the central learner in the driver) or 1 (remote)"))
    address: str | None = field(default=None, metadata=_help("Ray address (default: RAY_ADDRESS or local)"))

    def __post_init__(self) -> None:
        DataOptions.__post_init__(self)
        EnvDataOptions.__post_init__(self)
        FCPOSettings.__post_init__(self)
        rules = (
            ("iterations", self.iterations >= 1, "an integer >= 1"),
            ("eval_every", self.eval_every >= 0, "an integer >= 0 (0: only at the end)"),
            ("num_env_runners", self.num_env_runners is None or self.num_env_runners >= 0, "an integer >= 0 or none"),
            ("num_learners", self.num_learners in (0, 1), "0 or 1 (CPO runs on one learner)"),
        )
        for key, ok, rule in rules:
            if not ok:
                raise ConfigError(f"{key}: got {getattr(self, key)!r}; expected {rule}")


def to_algorithm_config(job: FCPOJobConfig, data: Any, num_env_runners: int | None = None) -> Any:
    """The ``FCPOConfig`` of ``job`` on env data ``data`` (``num_env_runners`` overrides the job's;
    both None: 0)."""
    from fairrec_ray.fcpo.algorithm import FCPOConfig

    runners = num_env_runners if num_env_runners is not None else job.num_env_runners
    return (
        FCPOConfig()
        .recommendation(data=data, **pick(job, RECOMMENDATION_KEYS))
        .training(**pick(job, TRAINING_KEYS))
        .env_runners(num_env_runners=runners or 0)
        .learners(num_learners=job.num_learners)
        .debugging(seed=job.seed, log_level="ERROR")
    )


def build_job_env_data(job: FCPOJobConfig) -> Any:
    from fairrec_ray.fcpo.env_data import build_env_data

    return build_env_data(job.load(), EnvDataOptions(**pick(job, ENV_DATA_KEYS)), seed=job.seed)


def progress_line(iteration: int, total: int, result: dict[str, Any], seconds: float) -> str:
    from fairrec_ray.fcpo import keys
    from fairrec_ray.fcpo.cpo import CPOCase

    learner = result.get("learners", {}).get("default_policy", {})
    case = CPOCase(int(learner.get(keys.CPO_CASE, CPOCase.UNCONSTRAINED))).name
    return (
        f"iter {iteration}/{total} reward {result[keys.EPISODE_REWARD_MEAN]:.3f} "
        f"cost {result[keys.EPISODE_COST_DISCOUNTED]:.3f}/d {result[keys.COST_LIMIT]:.3f} "
        f"kl {float(learner.get(keys.CPO_KL, 0.0)):.4f} step {float(learner.get(keys.CPO_STEP_FRACTION, 0.0)):.2f} "
        f"case {case} ({seconds:.2f} s)"
    )


def iteration_record(iteration: int, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    from fairrec_ray.fcpo import keys

    learner = result.get("learners", {}).get("default_policy", {})
    record = {"iteration": iteration, "seconds": seconds}
    for key in (keys.EPISODE_REWARD_MEAN, keys.EPISODE_COST_MEAN, keys.EPISODE_COST_DISCOUNTED, keys.NUM_EPISODES):
        record[key] = float(result[key])
    for key in (keys.CPO_CASE, keys.CPO_KL, keys.CPO_STEP_FRACTION, keys.CPO_C, keys.CPO_NU, keys.POLICY_STD,
                keys.REWARD_SURROGATE_GAIN, keys.COST_SURROGATE_CHANGE):  # fmt: skip
        if key in learner:
            record[key] = float(learner[key])
    return record


def run_fcpo(job: FCPOJobConfig) -> dict[str, Any]:
    """Train FCPO as ``job`` says and return the results dict (also written, atomically, to
    ``job.output/results.json`` after every evaluation): ``config``, ``cost_limit``, ``history``
    (one record per iteration), ``evaluations`` (validation every ``eval_every`` iterations),
    ``final_valid`` and ``final_test`` (flat scalar metrics of the final policy: recall@10,
    ndcg@10, gini, popularity_rate, cost_discounted, violation_rate, ...). The test split is
    evaluated once, at the end; select settings on ``final_valid`` (empty when
    ``valid_share = 0``)."""
    from fairrec_ray.cli import init_ray, write_json_atomic
    from fairrec_ray.fcpo.env_data import Split
    from fairrec_ray.fcpo.evaluation import learner_policy, policy_metrics

    data = build_job_env_data(job)
    config = to_algorithm_config(job, data)
    config.validate()  # bad combinations fail here, before Ray starts or anything is written
    output = Path(job.output)
    init_ray(job.address)
    if job.num_env_runners is None:
        import ray

        config.env_runners(num_env_runners=default_env_runners(ray.available_resources().get("CPU", 0.0)))
    log.info("FCPO: %d EnvRunners, %d remote learners", config.num_env_runners, config.num_learners)
    algo = config.build_algo()
    has_valid = data.valid_start is not None
    results: dict[str, Any] = {
        "config": config_to_dict(job),
        "positives": f"rating >= {job.positive_threshold}",
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_popular": int(data.popular.sum()),
        "cost_limit": config.cost_limit,
        "num_env_runners": config.num_env_runners,
        "prior_exposure_offset": config.prior_exposure_offset,
        "history": [],
        "evaluations": [],
    }

    def metrics_on(split: Split, iteration: int) -> dict[str, float]:
        at = (*EVAL_AT, job.top_k * job.horizon)
        metrics = policy_metrics(
            data, learner_policy(algo), job.top_k, job.horizon, config.cost_limit, job.gamma_c, at=at, split=split
        )
        log.info(
            "%s @ iter %d: recall@10 %.4f ndcg@10 %.4f gini %.4f popularity %.3f cost %.3f/d %.3f",
            split, iteration, metrics["recall@10"], metrics["ndcg@10"], metrics["gini"], metrics["popularity_rate"],
            metrics["cost_discounted"], config.cost_limit,
        )  # fmt: skip
        return metrics

    try:
        start = time.perf_counter()
        for iteration in range(1, job.iterations + 1):
            tick = time.perf_counter()
            result = algo.train()
            seconds = time.perf_counter() - tick
            results["history"].append(iteration_record(iteration, result, seconds))
            log.info(progress_line(iteration, job.iterations, result, seconds))
            if has_valid and job.eval_every and iteration % job.eval_every == 0 and iteration != job.iterations:
                results["evaluations"].append({"iteration": iteration, **metrics_on("valid", iteration)})
                write_json_atomic(output / RESULTS_FILE, results)
        results["train_seconds"] = time.perf_counter() - start
        results["checkpoint"] = str(algo.save_to_path((output / CHECKPOINT_DIR).resolve()))
        results["final_valid"] = metrics_on("valid", job.iterations) if has_valid else {}
        if has_valid:
            results["evaluations"].append({"iteration": job.iterations, **results["final_valid"]})
        results["final_test"] = metrics_on("test", job.iterations)
        write_json_atomic(output / RESULTS_FILE, results)
    finally:
        algo.stop()
    log.info("wrote %s", output / RESULTS_FILE)
    return results

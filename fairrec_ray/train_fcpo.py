"""``python -m fairrec_ray.train_fcpo``: train FCPO (CPO on RLlib) on a dataset at a fairness level.

Example::

    python -m fairrec_ray.train_fcpo --dataset movielens-100k --data-dir data/ml-100k \\
        --alpha 0.25 --iterations 50 --num-env-runners 2 --output runs/fcpo-a0.25

Prints one progress line per iteration (episode reward, discounted episode cost vs the limit d,
measured KL, the CPO case taken), evaluates on the test split every ``--eval-every`` iterations
and writes ``results.json`` (atomically, after every evaluation) and a final RLlib checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairrec_ray.cli import ArgumentParser, init_ray, run_main, write_json_atomic
from fairrec_ray.config import add_config_arguments, config_to_dict, resolve_config
from fairrec_ray.errors import ConfigError

log = logging.getLogger("fairrec_ray.train_fcpo")

RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoint"


@dataclass
class FCPOJobConfig:
    dataset: str = field(default="synthetic", metadata={"help": "dataset name (movielens-100k, movielens-1m, ...)"})
    data_dir: str | None = field(default=None, metadata={"help": "folder with the dataset's original files"})
    output: str = field(default="runs/fcpo", metadata={"help": "output directory"})
    alpha: float | None = field(
        default=None, metadata={"help": "fairness level: popular share <= alpha/(1+alpha); none = unconstrained"}
    )
    iterations: int = field(default=50, metadata={"help": "training iterations (one episode per user each)"})
    eval_every: int = field(default=10, metadata={"help": "test evaluation every N iterations (0: only at the end)"})
    num_env_runners: int = field(default=0, metadata={"help": "RLlib EnvRunners (0: sample in the driver)"})
    num_learners: int = field(default=0, metadata={"help": "0 (learner in the driver) or 1 (remote learner)"})
    seed: int = field(default=0, metadata={"help": "seed for data, embeddings and RLlib"})
    top_k: int = field(default=10, metadata={"help": "K, items recommended per step"})
    horizon: int = field(default=10, metadata={"help": "T, steps per episode"})
    positive_threshold: float = field(default=4.0, metadata={"help": "rating >= this is a positive"})
    popular_share: float = field(default=0.2, metadata={"help": "share of items in the popular group G0"})
    emb_dim: int = field(default=16, metadata={"help": "item embedding size of our MF"})
    max_kl: float = field(default=0.1, metadata={"help": "CPO trust region delta"})
    damping: float = field(default=0.1, metadata={"help": "Fisher damping"})
    cg_iters: int = field(default=10, metadata={"help": "conjugate-gradient iterations"})
    gamma_r: float = field(default=0.99, metadata={"help": "reward discount"})
    gamma_c: float = field(default=0.99, metadata={"help": "cost discount (also used for d)"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    critic_lr: float = field(default=1e-3, metadata={"help": "critic Adam learning rate"})
    critic_iters: int = field(default=2, metadata={"help": "critic passes over the batch per iteration"})
    critic_minibatch_size: int = field(default=1024, metadata={"help": "rows per critic Adam step (0: full batch)"})
    fvp_subsample: float = field(default=0.1, metadata={"help": "share of rows used for Fisher-vector products"})
    init_log_std: float = field(default=-0.5, metadata={"help": "initial log std of the Gaussian policy"})
    exposure_feature: float = field(
        default=1.0,
        metadata={"help": "scale (in typical MF score gaps) of the action's popular-item score offset; 0 = none"},
    )
    synthetic_users: int = field(default=300, metadata={"help": "synthetic dataset: users"})
    synthetic_items: int = field(default=400, metadata={"help": "synthetic dataset: items"})
    address: str | None = field(default=None, metadata={"help": "Ray address (default: RAY_ADDRESS or local)"})

    def __post_init__(self) -> None:
        if self.alpha is not None and math.isinf(self.alpha) and self.alpha > 0:
            self.alpha = None  # alpha = inf: no constraint
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"alpha: got {self.alpha}; expected a number > 0, or none for unconstrained")
        for key in ("iterations", "top_k", "horizon", "emb_dim", "cg_iters"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: got {getattr(self, key)}; expected an integer >= 1")
        if self.eval_every < 0 or self.num_env_runners < 0:
            raise ConfigError("eval_every and num_env_runners must be >= 0")
        if self.critic_minibatch_size < 0 or not 0 < self.fvp_subsample <= 1:
            raise ConfigError(
                f"critic_minibatch_size / fvp_subsample: got {self.critic_minibatch_size} / {self.fvp_subsample}; "
                "expected >= 0 / in (0, 1]"
            )
        if self.exposure_feature < 0:
            raise ConfigError(f"exposure_feature: got {self.exposure_feature}; expected >= 0 (0 = no popular offset)")
        if self.num_learners not in (0, 1):
            raise ConfigError(f"num_learners: got {self.num_learners}; expected 0 or 1 (CPO runs on one learner)")


def build_config(job: FCPOJobConfig, data: Any) -> Any:
    from fairrec_ray.fcpo.config import FCPOConfig

    return (
        FCPOConfig()
        .recommendation(data=data, top_k=job.top_k, horizon=job.horizon)
        .training(
            alpha=job.alpha,
            max_kl=job.max_kl,
            damping=job.damping,
            cg_iters=job.cg_iters,
            gamma_r=job.gamma_r,
            gamma_c=job.gamma_c,
            gae_lambda=job.gae_lambda,
            critic_lr=job.critic_lr,
            critic_iters=job.critic_iters,
            critic_minibatch_size=job.critic_minibatch_size or None,
            fvp_subsample=job.fvp_subsample,
        )
        .rl_module(model_config={"init_log_std": job.init_log_std})
        .env_runners(num_env_runners=job.num_env_runners)
        .learners(num_learners=job.num_learners)
        .debugging(seed=job.seed, log_level="ERROR")
    )


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
    for key in (keys.CPO_CASE, keys.CPO_KL, keys.CPO_STEP_FRACTION, keys.CPO_C, keys.CPO_NU, keys.POLICY_STD):
        if key in learner:
            record[key] = float(learner[key])
    return record


def run_fcpo(job: FCPOJobConfig) -> dict[str, Any]:
    """Train FCPO as ``job`` says and return the results dict (also written to
    ``job.output/results.json``): ``config``, ``cost_limit``, ``history`` (one record per
    iteration), ``evaluations`` and ``final_test`` (recall@10, precision@10, f1@10, ndcg@10,
    gini, popularity_rate, cost_discounted, cost_limit, violation_rate, ...). Reuses an
    initialised Ray (e.g. inside a Tune trial); reports only through ``logging``."""
    from fairrec_ray.data import SyntheticConfig, load_dataset
    from fairrec_ray.fcpo.env_data import build_env_data
    from fairrec_ray.fcpo.evaluation import algo_policy, evaluate_policy

    synthetic = SyntheticConfig(n_users=job.synthetic_users, n_items=job.synthetic_items, mean_interactions=40)
    dataset = load_dataset(job.dataset, data_dir=job.data_dir, seed=job.seed, synthetic=synthetic)
    data = build_env_data(
        dataset,
        positive_threshold=job.positive_threshold,
        popular_share=job.popular_share,
        emb_dim=job.emb_dim,
        seed=job.seed,
        exposure_feature=job.exposure_feature,
    )
    config = build_config(job, data)
    config.validate()  # bad combinations fail here, before Ray starts or anything is written
    output = Path(job.output)
    init_ray(job.address)
    algo = config.build_algo()
    results: dict[str, Any] = {
        "config": config_to_dict(job),
        "positives": f"rating >= {job.positive_threshold}",
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_popular": int(data.popular.sum()),
        "cost_limit": config.cost_limit,
        "history": [],
        "evaluations": [],
    }

    def evaluate(iteration: int) -> dict[str, float]:
        metrics = evaluate_policy(
            data,
            algo_policy(algo),
            job.top_k,
            job.horizon,
            config.cost_limit,
            job.gamma_c,
            at=(10, job.top_k * job.horizon),
        )
        results["evaluations"].append({"iteration": iteration, **metrics})
        log.info(
            "test @ iter %d: recall@10 %.4f ndcg@10 %.4f gini %.4f popularity %.3f cost %.3f/d %.3f",
            iteration, metrics["recall@10"], metrics["ndcg@10"], metrics["gini"], metrics["popularity_rate"],
            metrics["cost_discounted"], config.cost_limit,
        )  # fmt: skip
        write_json_atomic(output / RESULTS_FILE, results)
        return metrics

    try:
        start = time.perf_counter()
        for iteration in range(1, job.iterations + 1):
            tick = time.perf_counter()
            result = algo.train()
            seconds = time.perf_counter() - tick
            results["history"].append(iteration_record(iteration, result, seconds))
            log.info(progress_line(iteration, job.iterations, result, seconds))
            if job.eval_every and iteration % job.eval_every == 0 and iteration != job.iterations:
                evaluate(iteration)
        results["train_seconds"] = time.perf_counter() - start
        results["checkpoint"] = str(algo.save_to_path((output / CHECKPOINT_DIR).resolve()))
        results["final_test"] = evaluate(job.iterations)
        write_json_atomic(output / RESULTS_FILE, results)
    finally:
        algo.stop()
    log.info("wrote %s", output / RESULTS_FILE)
    return results


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="python -m fairrec_ray.train_fcpo", description=__doc__.split("\n")[0])
    add_config_arguments(parser, FCPOJobConfig)
    run_fcpo(resolve_config(FCPOJobConfig, parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    run_main(main)

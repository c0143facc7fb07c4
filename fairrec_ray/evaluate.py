"""``python -m fairrec_ray.evaluate``: rank the held-out items of a dataset with a P5 model folder
(trie-constrained beam search) or a baseline, and print the metrics as JSON.

Example: ``python -m fairrec_ray.evaluate --model runs/p5/model --dataset movielens-100k
--data-dir data/ml-100k --protocol full --num-workers 2``. With ``--num-workers N`` the users are
split over N Ray tasks (each ranks its users in batches of ``--batch-size``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fairrec_ray.cli import ArgumentParser, init_ray, run_main, write_json_atomic
from fairrec_ray.config import add_config_arguments, resolve_config
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5.config import P5TrainConfig


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class EvaluateConfig:
    model: str | None = field(default=None, metadata=_help("P5 model folder (OUTPUT/model of pretrain_p5)"))
    baseline: Literal["none", "mostpop", "bpr"] = field(default="none", metadata=_help("rank with a baseline"))
    dataset: str = field(default="synthetic", metadata=_help("dataset name"))
    data_dir: str | None = field(default=None, metadata=_help("folder with the dataset's files"))
    protocol: Literal["full", "sampled-100"] = field(default="full", metadata=_help("candidate protocol"))
    stage: Literal["valid", "test"] = field(default="test", metadata=_help("held-out item to rank"))
    batch_size: int = field(default=32, metadata=_help("users per beam-search batch (>= 2)"))
    num_beams: int = field(default=20, metadata=_help("beams (paper: 20)"))
    num_workers: int = field(default=0, metadata=_help("Ray tasks ranking user shards (0 = in-process)"))
    torch_threads: int = field(default=1, metadata=_help("torch threads per process"))
    seed: int = field(default=0, metadata=_help("seed of the sampled negatives"))
    max_users: int = field(default=0, metadata=_help("evaluate only the first N users (0 = all)"))
    min_interactions: int = field(default=3, metadata=_help("drop users with fewer interactions"))
    synthetic_users: int = field(default=943, metadata=_help("synthetic dataset: users"))
    synthetic_items: int = field(default=1682, metadata=_help("synthetic dataset: items"))
    synthetic_interactions: float = field(default=106.0, metadata=_help("synthetic: mean interactions per user"))
    synthetic_genres: int = field(default=18, metadata=_help("synthetic: genres"))
    output: str | None = field(default=None, metadata=_help("also write the JSON to this file"))
    address: str | None = field(default=None, metadata=_help("Ray address (default: RAY_ADDRESS or local)"))

    def __post_init__(self) -> None:
        if (self.model is None) == (self.baseline == "none"):
            raise ConfigError("model/baseline: give exactly one of --model DIR or --baseline mostpop|bpr")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size: got {self.batch_size}; evaluation is batched, use >= 2")
        for name in ("num_workers", "max_users"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; must be >= 0")
        if self.num_beams < 1 or self.torch_threads < 1:
            raise ConfigError("num_beams/torch_threads: must be >= 1")

    def train_config(self) -> P5TrainConfig:
        return P5TrainConfig(
            dataset=self.dataset, data_dir=self.data_dir, min_interactions=self.min_interactions,
            synthetic_users=self.synthetic_users, synthetic_items=self.synthetic_items,
            synthetic_interactions=self.synthetic_interactions, synthetic_genres=self.synthetic_genres, seed=0,
        )  # fmt: skip


def _rank_shard(model, tokenizer, split, cfg: EvaluateConfig, rows: np.ndarray) -> np.ndarray:
    import torch

    from fairrec_ray.p5.generate import generate_rankings

    torch.set_num_threads(cfg.torch_threads)
    ranked = generate_rankings(
        model, tokenizer, split, cfg.protocol, cfg.stage, rows, cfg.batch_size, cfg.num_beams, cfg.seed
    )
    return ranked.ranks


def evaluate(cfg: EvaluateConfig) -> dict:
    from fairrec_ray.p5.baselines import bpr_scores, evaluate_scores, most_pop_scores
    from fairrec_ray.p5.examples import eval_rows
    from fairrec_ray.p5.generate import ranking_metrics
    from fairrec_ray.p5.model import load_p5
    from fairrec_ray.p5.train import load_split

    dataset, split = load_split(cfg.train_config())
    start = time.perf_counter()
    if cfg.baseline != "none":
        fit = most_pop_scores if cfg.baseline == "mostpop" else bpr_scores
        result = evaluate_scores(fit(split, dataset.n_items, cfg.stage), split, cfg.protocol, cfg.stage, cfg.seed)
        result["model"] = cfg.baseline
    else:
        model, tok = load_p5(cfg.model, n_items=dataset.n_items)
        if tok.n_items != dataset.n_items:
            raise ConfigError(f"model: {cfg.model} numbers {tok.n_items} items; dataset has {dataset.n_items}")
        rows = eval_rows(split, cfg.stage)
        if cfg.max_users:
            rows = rows[: cfg.max_users]
        if cfg.num_workers == 0:
            ranks = _rank_shard(model, tok, split, cfg, rows)
        else:
            import ray

            init_ray(cfg.address)
            task = ray.remote(num_cpus=1)(_rank_shard)
            refs = [ray.put(x) for x in (model, tok, split, cfg)]
            shards = np.array_split(rows, cfg.num_workers)
            ranks = np.concatenate(ray.get([task.remote(*refs, s) for s in shards if len(s)]))
        result = {**ranking_metrics(ranks), "protocol": cfg.protocol, "stage": cfg.stage, "users": int(len(rows))}
        result["model"] = str(cfg.model)
    seconds = time.perf_counter() - start
    result.update({"dataset": dataset.name, "seconds": seconds, "users_per_s": result["users"] / seconds})
    return result


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="python -m fairrec_ray.evaluate", description=__doc__.splitlines()[0])
    add_config_arguments(parser, EvaluateConfig)
    cfg = resolve_config(EvaluateConfig, parser.parse_args(argv))
    result = evaluate(cfg)
    if cfg.output:
        write_json_atomic(cfg.output, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)

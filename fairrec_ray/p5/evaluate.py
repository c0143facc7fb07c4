"""The one ranking evaluation of the leave-one-out protocols, for P5, CFP and the baselines.

A model is ranked by trie-constrained beam search (``generate.generate_rankings``), a baseline by
its score matrix; both reach the same ``rank_metrics`` over the gold item's rank on the same
candidates (``candidates.candidate_mask``: ``full`` or ``sampled-100``). Every function is
keyword-only past its data arguments, so callers name what they pass.

``EvaluateConfig`` / ``run_evaluate`` back ``python -m fairrec_ray.evaluate``: a model folder is
evaluated on the data spec it records (``data_spec.json``), not on data rebuilt from flags.
"""

from __future__ import annotations

import time
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from fairrec_ray.data.options import DATA_FIELDS, DataOptions, read_data_spec
from fairrec_ray.data.splits import LeaveOneOutSplit
from fairrec_ray.errors import ConfigError
from fairrec_ray.metrics import HIT_KS, NDCG_KS, RANKING_KEYS, hit_at_k, ndcg_at_k
from fairrec_ray.p5.candidates import PROTOCOLS, Protocol, candidate_mask, gold_items, rank_of_gold
from fairrec_ray.p5.examples import Stage, eval_rows
from fairrec_ray.p5.tokenizer import P5Tokenizer

__all__ = ["RANKING_KEYS", "EvaluateConfig", "evaluate_model", "evaluate_scores", "rank_metrics", "run_evaluate"]


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """hit@1/3/5/10 and NDCG@5/10 of 0-based gold ranks (-1: not ranked)."""
    out = {f"hit@{k}": hit_at_k(ranks, k) for k in HIT_KS}
    out.update({f"ndcg@{k}": ndcg_at_k(ranks, k) for k in NDCG_KS})
    return out


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol: got {protocol!r}; expected one of {list(PROTOCOLS)}")


def evaluate_model(
    model: torch.nn.Module,
    tokenizer: P5Tokenizer,
    split: LeaveOneOutSplit,
    *,
    protocol: Protocol,
    stage: Stage = "test",
    rows: Sequence[int] | None = None,
    batch_size: int = 32,
    num_beams: int = 20,
    seed: int = 0,
    max_history: int = 20,
) -> dict[str, Any]:
    """Rank ``stage``'s held-out item for ``rows`` (default: every row) with any seq2seq model
    that has ``.generate`` (a P5, a CFP model with its prompts). Returns metrics + protocol info."""
    from fairrec_ray.p5.generate import generate_rankings

    _check_protocol(protocol)
    ranked = generate_rankings(
        model, tokenizer, split, protocol=protocol, stage=stage, rows=rows, batch_size=batch_size,
        num_beams=num_beams, seed=seed, max_history=max_history,
    )  # fmt: skip
    return {**rank_metrics(ranked.ranks), "protocol": protocol, "stage": stage, "users": int(len(ranked.rows))}


def evaluate_scores(
    scores: np.ndarray, split: LeaveOneOutSplit, *, protocol: Protocol, stage: Stage = "test", seed: int = 0
) -> dict[str, Any]:
    """The same metrics for a full score matrix (rows = split rows), e.g. MostPop or BPR-MF."""
    _check_protocol(protocol)
    rows = eval_rows(split, stage)
    mask = candidate_mask(split, protocol, stage, rows, scores.shape[1], seed)
    ranks = rank_of_gold(np.asarray(scores)[rows], mask, gold_items(split, stage, rows))
    return {**rank_metrics(ranks), "protocol": protocol, "stage": stage, "users": int(len(rows))}


# ---------------------------------------------------------------- the evaluate job


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class EvaluateConfig(DataOptions):
    model: str | None = field(default=None, metadata=_help("P5 model folder (OUTPUT/model of pretrain_p5)"))
    baseline: Literal["none", "mostpop", "bpr"] = field(default="none", metadata=_help("rank with a baseline"))
    protocol: Literal["full", "sampled-100"] = field(default="full", metadata=_help("candidate protocol"))
    stage: Literal["valid", "test"] = field(default="test", metadata=_help("held-out item to rank"))
    batch_size: int = field(default=32, metadata=_help("users per beam-search batch (>= 2)"))
    num_beams: int = field(default=20, metadata=_help("beams (paper: 20)"))
    max_history: int = field(default=20, metadata=_help("history items in a prompt (most recent)"))
    num_workers: int = field(default=0, metadata=_help("Ray tasks ranking user shards (0 = in-process)"))
    torch_threads: int = field(default=1, metadata=_help("torch threads per process"))
    max_users: int = field(default=0, metadata=_help("evaluate only the first N users (0 = all)"))
    output: str | None = field(default=None, metadata=_help("also write the JSON to this file"))
    address: str | None = field(default=None, metadata=_help("Ray address (default: RAY_ADDRESS or local)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.model is None) == (self.baseline == "none"):
            raise ConfigError("model/baseline: give exactly one of --model DIR or --baseline mostpop|bpr")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size: got {self.batch_size}; evaluation is batched, use >= 2")
        for name in ("num_workers", "max_users"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; must be >= 0")
        if self.num_beams < 1 or self.torch_threads < 1 or self.max_history < 1:
            raise ConfigError("num_beams/torch_threads/max_history: must be >= 1")


def data_for_model(cfg: EvaluateConfig, given: set[str]) -> DataOptions:
    """The data a model folder was trained on (its ``data_spec.json``); ``--data-dir`` may point
    to where the files are now. A data flag that contradicts the spec is an error, not a silent
    switch to other data."""
    spec = read_data_spec(cfg.model) if cfg.model else None
    if spec is None:
        return DataOptions(**{k: getattr(cfg, k) for k in DATA_FIELDS})
    for key in sorted(given & set(DATA_FIELDS) - {"data_dir"}):
        if getattr(cfg, key) != getattr(spec, key):
            raise ConfigError(
                f"{key}: got {getattr(cfg, key)!r} but the model in {cfg.model} was trained with {getattr(spec, key)!r}"
                " (its data_spec.json); drop the flag to evaluate on the model's own data"
            )
    if "data_dir" in given:
        spec.data_dir = cfg.data_dir
    return spec


def _rank_shard(model: Any, tokenizer: Any, split: Any, cfg: EvaluateConfig, seed: int, rows: np.ndarray) -> Any:
    from fairrec_ray.p5.generate import generate_rankings

    torch.set_num_threads(cfg.torch_threads)
    return generate_rankings(
        model, tokenizer, split, protocol=cfg.protocol, stage=cfg.stage, rows=rows, batch_size=cfg.batch_size,
        num_beams=cfg.num_beams, seed=seed, max_history=cfg.max_history,
    ).ranks  # fmt: skip


def run_evaluate(cfg: EvaluateConfig, given: Set[str] = frozenset()) -> dict[str, Any]:
    """Metrics of ``cfg.model`` (or ``cfg.baseline``) as a JSON-ready dict. ``given``: the config
    keys the user set explicitly (checked against the model's data spec)."""
    from fairrec_ray.p5.baselines import bpr_scores, most_pop_scores
    from fairrec_ray.p5.model import load_p5

    data = data_for_model(cfg, set(given))
    dataset, split = data.load_split()
    start = time.perf_counter()
    if cfg.baseline != "none":
        fit = most_pop_scores if cfg.baseline == "mostpop" else bpr_scores
        scores = fit(split, dataset.n_items, cfg.stage)
        result = evaluate_scores(scores, split, protocol=cfg.protocol, stage=cfg.stage, seed=data.seed)
        result["model"] = cfg.baseline
    else:
        model, tok = load_p5(cfg.model, n_items=dataset.n_items)
        if tok.n_items != dataset.n_items:
            raise ConfigError(f"model: {cfg.model} numbers {tok.n_items} items; dataset has {dataset.n_items}")
        rows = eval_rows(split, cfg.stage)
        if cfg.max_users:
            rows = rows[: cfg.max_users]
        if cfg.num_workers == 0:
            ranks = _rank_shard(model, tok, split, cfg, data.seed, rows)
        else:
            import ray

            from fairrec_ray.cli import init_ray

            init_ray(cfg.address)
            task = ray.remote(num_cpus=1)(_rank_shard)
            refs = [ray.put(x) for x in (model, tok, split, cfg)]
            shards = [s for s in np.array_split(rows, cfg.num_workers) if len(s)]
            ranks = np.concatenate(ray.get([task.remote(*refs, data.seed, s) for s in shards]))
        result = {**rank_metrics(ranks), "protocol": cfg.protocol, "stage": cfg.stage, "users": int(len(rows))}
        result["model"] = str(cfg.model)
    seconds = time.perf_counter() - start
    result.update({"dataset": dataset.name, "seconds": seconds, "users_per_s": result["users"] / seconds})
    return result

"""The per-worker P5 training loop (Ray Train ``train_loop_per_worker``) and the plain epoch
function it shares with the bare single-process baseline in ``bench/bench_p5.py``.

Data parallel: every worker builds the same epoch of prompts (seeded by ``seed + epoch``),
shuffles it identically and takes every ``world_size``-th example, truncated so all ranks run the
same number of steps (DDP all-reduces gradients). Validation users are sharded the same way and the
ranks are gathered. Rank 0 writes the checkpoint: ``model/`` (latest), ``best_model/`` (best
validation hit@10 so far), ``trainer_state.pt`` (optimizer, schedule, epoch, history).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from transformers import get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

from fairrec_ray.console import Progress
from fairrec_ray.p5.batching import bucket_batches, plain_batches
from fairrec_ray.p5.config import P5TrainConfig
from fairrec_ray.p5.evaluate import rank_metrics
from fairrec_ray.p5.examples import P5Collator, PromptExample, eval_rows, train_examples
from fairrec_ray.p5.generate import generate_rankings
from fairrec_ray.p5.model import P5Model, build_p5, save_p5, unwrap
from fairrec_ray.train_context import LoopContext

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"
DONE_FILE = "metrics.json"  # written last: a checkpoint folder without it is incomplete


class InjectedCrash(RuntimeError):
    """Raised by ``crash_after_epoch`` (tests of kill-and-resume)."""


@dataclass
class EpochStats:
    loss: float
    samples: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


def shard(examples: list[PromptExample], seed: int, epoch: int, rank: int, world: int) -> list[PromptExample]:
    order = np.random.default_rng([seed, epoch, 7]).permutation(len(examples))
    per_rank = len(examples) // world
    return [examples[i] for i in order[rank::world][:per_rank]]


def epoch_batches(
    examples: list[PromptExample], tok, batch_size: int, bucketing: bool, seed: int, epoch: int
) -> list[list[PromptExample]]:
    """This rank's shard cut into batches: by similar token length (``bucket_batches``) or in order."""
    if not bucketing:
        return [[examples[i] for i in b] for b in plain_batches(len(examples), batch_size)]
    src = [len(ids) for ids in tok.encode_batch([e.source for e in examples])]
    tgt = [len(ids) for ids in tok.encode_batch([e.target for e in examples])]
    rng = np.random.default_rng([seed, epoch, 11])
    return [[examples[i] for i in b] for b in bucket_batches(src, tgt, batch_size, rng)]


def train_epoch(model, optimizer, scheduler, batches, collate, grad_clip: float, device) -> EpochStats:
    """One pass over ``batches`` (lists of examples of this rank's shard). Returns local stats."""
    model.train()
    total, n, start = 0.0, 0, time.perf_counter()
    for examples in batches:
        batch = collate(examples)
        out = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            labels=batch["labels"].to(device),
        )
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        total += out.loss.item() * len(batch["user_idx"])
        n += len(batch["user_idx"])
    return EpochStats(total / max(n, 1), n, time.perf_counter() - start)


def make_optimizer(model: torch.nn.Module, cfg: P5TrainConfig, total_steps: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = int(cfg.warmup_ratio * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


def steps_per_epoch(n_examples: int, world: int, batch_size: int) -> int:
    return math.ceil((n_examples // world) / batch_size)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Entry point of a Ray Train worker."""
    from fairrec_ray.train_context import RayTrainContext

    train_loop(loop_config, RayTrainContext())


def train_loop(loop_config: dict[str, Any], context: LoopContext) -> None:
    """Train P5 for ``loop_config`` on ``context`` (Ray Train workers or this process)."""
    cfg = P5TrainConfig(**loop_config["config"])
    split, tok = loop_config["split"], loop_config["tokenizer"]
    rank, world = context.rank, context.world
    threads = cfg.torch_threads or max(1, (os.cpu_count() or 1) // max(1, cfg.num_workers))
    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    torch.manual_seed(cfg.seed)

    model: torch.nn.Module = build_p5(cfg.preset, tok, seed=cfg.seed)
    if loop_config.get("init_state") is not None:
        model.load_state_dict(loop_config["init_state"], strict=False)
        model.set_word_starts(tok.word_start_flags())
    excfg = cfg.example_config()
    n_train = len(train_examples(split, tok, excfg, cfg.seed, 0))
    total_steps = cfg.epochs * steps_per_epoch(n_train, world, cfg.batch_size)

    start_epoch, history, best = 1, [], {"val_hit@10": -1.0, "epoch": 0}
    best_state: dict[str, torch.Tensor] | None = None
    resume_dir = context.latest_checkpoint()
    state = None
    if resume_dir is not None:
        model.load_state_dict(P5Model.from_pretrained(resume_dir / "model").state_dict())
        state = torch.load(resume_dir / STATE_FILE, weights_only=False)
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
        if rank == 0:
            best_state = P5Model.from_pretrained(resume_dir / "best_model").state_dict()
            log.info("p5: resumed from the epoch %d checkpoint; starting at epoch %d", state["epoch"], start_epoch)

    if world > 1 or cfg.use_gpu:
        import ray.train.torch

        model = ray.train.torch.prepare_model(model)
    device = next(model.parameters()).device
    optimizer, scheduler = make_optimizer(model, cfg, total_steps)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    collate = P5Collator(tok, user_mask=False)  # pre-training never reads the user span

    val_rows = eval_rows(split, "valid")
    if cfg.val_users and cfg.val_users < len(val_rows):
        val_rows = np.sort(np.random.default_rng([cfg.seed, 3]).choice(val_rows, cfg.val_users, replace=False))

    progress = Progress("p5", total=cfg.epochs, start=start_epoch - 1)
    for epoch in range(start_epoch, cfg.epochs + 1):
        examples = shard(train_examples(split, tok, excfg, cfg.seed, epoch), cfg.seed, epoch, rank, world)
        batches = epoch_batches(examples, tok, cfg.batch_size, cfg.length_bucketing, cfg.seed, epoch)
        stats = train_epoch(model, optimizer, scheduler, batches, collate, cfg.grad_clip, device)
        loss, samples, seconds = _reduce(stats, world, device)
        val = _validate(unwrap(model), tok, split, cfg, val_rows[rank::world], world)
        metrics = {
            "epoch": epoch, "loss": loss, "samples_per_s": samples / seconds, "train_seconds": seconds,
            **{f"val_{k}": v for k, v in val.items()},
        }  # fmt: skip
        is_best = metrics["val_hit@10"] > best["val_hit@10"]
        if is_best:
            best = {"val_hit@10": metrics["val_hit@10"], "epoch": epoch}
        metrics["best_epoch"] = best["epoch"]
        history.append(metrics)
        if rank == 0:
            if is_best or best_state is None:
                best_state = {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}
            progress.update(
                epoch, loss=loss, samples_per_s=round(metrics["samples_per_s"]),
                **{f"val_{k}": val[k] for k in ("hit@1", "hit@10", "ndcg@10")}, best_epoch=best["epoch"],
            )  # fmt: skip
        trainer_state = {
            "epoch": epoch, "history": history, "best": best,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        }  # fmt: skip
        _report(context, metrics, model, best_state, trainer_state, tok)
        if cfg.crash_after_epoch == epoch:
            raise InjectedCrash(f"crash_after_epoch={epoch}: simulated failure after the checkpoint")


def _reduce(stats: EpochStats, world: int, device) -> tuple[float, int, float]:
    if world == 1:
        return stats.loss, stats.samples, stats.seconds
    t = torch.tensor([stats.loss * stats.samples, stats.samples, stats.seconds], dtype=torch.float64)
    dist.all_reduce(t)
    samples = int(t[1])
    return float(t[0]) / max(samples, 1), samples, float(t[2]) / world


def _validate(model, tok, split, cfg: P5TrainConfig, rows: np.ndarray, world: int) -> dict[str, float]:
    ranks = np.empty(0, dtype=np.int64)
    if len(rows):
        ranks = generate_rankings(
            model, tok, split, protocol=cfg.val_protocol, stage="valid", rows=rows, batch_size=cfg.eval_batch_size,
            num_beams=cfg.num_beams, seed=cfg.seed, max_history=cfg.max_history,
        ).ranks  # fmt: skip
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, ranks)
        ranks = np.concatenate(gathered)
    return rank_metrics(ranks)


def _report(context: LoopContext, metrics, model, best_state, trainer_state, tok) -> None:
    """Rank 0 writes the checkpoint (latest model, best model, trainer state); every rank reports."""
    if context.rank != 0:
        context.report(metrics)
        return
    directory = context.new_checkpoint_dir(metrics["epoch"])
    save_p5(model, tok, directory / "model")
    _save_state_dict_as_model(unwrap(model), best_state, tok, directory / "best_model")
    torch.save(trainer_state, directory / STATE_FILE)
    (directory / DONE_FILE).write_text(json.dumps(metrics))
    context.report(metrics, directory)


def _save_state_dict_as_model(model: torch.nn.Module, state: dict[str, torch.Tensor] | None, tok, directory: Path):
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if state is not None:
        model.load_state_dict(state)
    try:
        save_p5(model, tok, directory)
    finally:
        model.load_state_dict(current)

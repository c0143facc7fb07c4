"""The Ray Train loop (one call per worker): adversarial prefix training on a frozen P5.

Per batch, by ``schedule.phase_for``:

* prompt step (REC / TOGETHER): ``L = L_rec − λ·L_disc`` through the DDP-wrapped CFP model; the
  discriminator is evaluated through its *unwrapped* module in eval mode, and the gradient that the
  backward leaves on its parameters is dropped before its own step — so the prompt update sees
  the discriminator as a fixed function and the discriminator's update never sees the prompt's
  objective (the UP5 code let these mix);
* discriminator step (WARMUP / TOGETHER / DISC): ``L_disc`` on *detached* representations, through
  the DDP-wrapped discriminator (gradients averaged over workers).

Per epoch: losses averaged over workers; the discriminator's BatchNorm statistics averaged too, so
every rank's adversary is the same function in the next prompt step; rank 0 evaluates on the
validation users (probe AUC + validation hit@k), saves a checkpoint (prompt + discriminator +
optimisers) and every rank reports once. The loop runs on a ``LoopContext``: Ray Train workers, or
this process (``num_workers=0``); it resumes from the context's latest checkpoint.

Users: the loop holds ``CFPData.for_training()`` — train and validation users; the held-out users
are absent and their labels hidden. Batches come from the train users only.

Inputs: workers read nothing from the driver's disk. The driver ships the backbone folder's files,
the dataset and its split (``DriverInputs``) through Ray's object store and the validated config
as an object, so on a multi-node cluster only the Train ``storage_path`` must be shared.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.data import seed_everything
from fairrec_ray.cfp.discriminator import (
    adversary_loss,
    discriminator_accuracy,
    discriminator_loss,
)
from fairrec_ray.cfp.evaluate import evaluate_cfp
from fairrec_ray.cfp.schedule import phase_for
from fairrec_ray.cfp.state import STATE_FILE, build_models, load_state, prompt_state
from fairrec_ray.console import Progress
from fairrec_ray.train_context import LoopContext

log = logging.getLogger(__name__)


def worker_placement(rank: int, world: int) -> list[dict[str, Any]]:
    """Rank, Ray node id and node IP of every worker (one collective, on every rank): saved in the
    checkpoints so ``results.json`` shows where the run actually ran."""
    if not ray.is_initialized():
        return [{"rank": rank, "node_id": None, "node_ip": None}]
    here = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    if world <= 1 or not torch.distributed.is_initialized():
        return [here]
    everyone: list[Any] = [None] * world
    torch.distributed.all_gather_object(everyone, here)
    return everyone


def sync_buffers(module: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks: each rank
    updates them from its own shard, and the prompt step reads them through the unwrapped module."""
    if world <= 1 or not torch.distributed.is_initialized():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            torch.distributed.all_reduce(buffer)
            buffer.div_(world)


def rank_spread(tensors: list[torch.Tensor], world: int) -> float:
    """Largest difference of any element of ``tensors`` between ranks (0.0: identical everywhere)."""
    if world <= 1 or not torch.distributed.is_initialized():
        return 0.0
    flat = torch.cat([t.detach().double().reshape(-1) for t in tensors])
    low, high = flat.clone(), flat.clone()
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    return float((high - low).max())


def _allreduce_mean(values: dict[str, float], world: int) -> dict[str, float]:
    if world <= 1 or not torch.distributed.is_initialized():
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return {k: float(v) / world for k, v in zip(keys, tensor.tolist())}


def adversarial_epoch(
    model, disc, raw_model, raw_disc, opt_p, opt_d, batches, config: CFPConfig, epoch: int, world: int = 1
) -> dict:
    """One epoch of the alternating schedule over ``batches``; ``model``/``disc`` may be DDP
    wrappers of ``raw_model``/``raw_disc`` (the bare-PyTorch benchmark passes the raw modules).
    Returns this process's mean losses, discriminator accuracy, examples/s and seconds."""
    lam = config.discriminator_weight
    sums = {"rec_loss": 0.0, "disc_loss": 0.0, "disc_acc": 0.0}
    counts = {"rec_loss": 0, "disc_loss": 0}
    started = time.perf_counter()
    n_examples = 0
    for step, batch in enumerate(batches):
        phase = phase_for(
            epoch, step, config.disc_warmup_epochs, config.rec_steps, config.together_steps, config.disc_steps
        )
        attr = batch["attribute"]
        rep = None
        n_examples += len(attr)
        if phase.updates_prompt:
            model.train()
            raw_disc.eval()
            rec_loss, rep = model(
                batch["input_ids"], batch["attention_mask"], batch["labels"], batch["user_token_mask"]
            )
            loss = rec_loss
            if lam > 0:
                loss = rec_loss + lam * adversary_loss(raw_disc(rep), attr, config.adversary_loss)
            opt_p.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(raw_model.prompt_parameters(), config.grad_clip)
            opt_p.step()
            opt_d.zero_grad(set_to_none=True)  # drop the adversarial term's gradient on the discriminator
            sums["rec_loss"] += float(rec_loss.detach())
            counts["rec_loss"] += 1
            rep = rep.detach()
        if phase.updates_discriminator:
            if rep is None:
                raw_model.eval()
                with torch.no_grad():
                    rep = raw_model.encode_users(batch["input_ids"], batch["attention_mask"], batch["user_token_mask"])
            disc.train()
            logits = disc(rep)
            d_loss = discriminator_loss(logits, attr)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            sync_buffers(raw_disc, world)  # each rank updated BatchNorm stats from its own shard
            sums["disc_loss"] += float(d_loss.detach())
            sums["disc_acc"] += discriminator_accuracy(logits.detach(), attr)
            counts["disc_loss"] += 1
    elapsed = time.perf_counter() - started
    return {
        "rec_loss": sums["rec_loss"] / max(1, counts["rec_loss"]),
        "disc_loss": sums["disc_loss"] / max(1, counts["disc_loss"]),
        "disc_acc": sums["disc_acc"] / max(1, counts["disc_loss"]),
        "examples_per_s": n_examples / max(elapsed, 1e-9),
        "train_seconds": elapsed,
    }


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Entry point of a Ray Train worker."""
    from fairrec_ray.train_context import RayTrainContext

    train_loop(loop_config, RayTrainContext())


def train_loop(loop_config: dict[str, Any], context: LoopContext) -> None:
    """Adversarial prompt training for ``loop_config`` on ``context``."""
    # Validated by the driver and passed as an object: its --backbone/--data-dir paths need not
    # exist where this runs; the inputs come through the object store (or directly, in-process).
    config: CFPConfig = loop_config["config"]
    inputs = loop_config["inputs"]
    inputs = ray.get(inputs) if isinstance(inputs, ray.ObjectRef) else inputs
    rank, world = context.rank, context.world
    torch.set_num_threads(max(1, int(config.cpus_per_worker)))

    resume = context.latest_checkpoint()
    state = load_state(resume) if resume is not None else None
    with tempfile.TemporaryDirectory(prefix="cfp-backbone-") as folder:  # node-local copy, loaded at once
        backbone_dir = inputs.write_backbone(Path(folder))
        model, disc, data = build_models(config, str(backbone_dir), state, (inputs.dataset, inputs.split))
    data = data.for_training()  # held-out users: absent, labels hidden
    del inputs  # the backbone's bytes are loaded now
    raw_model, raw_disc = model, disc
    opt_p = torch.optim.AdamW(raw_model.prompt_parameters(), lr=config.prefix_lr, weight_decay=config.weight_decay)
    opt_d = torch.optim.AdamW(raw_disc.parameters(), lr=config.discriminator_lr, weight_decay=config.weight_decay)
    start_epoch = 0
    if state is not None:
        opt_p.load_state_dict(state["opt_prompt"])
        opt_d.load_state_dict(state["opt_disc"])
        start_epoch = state["epoch"] + 1
        if rank == 0:
            log.info("cfp: resuming after epoch %d", state["epoch"])
    if world > 1 or config.use_gpu:
        from ray.train.torch import prepare_model

        model, disc = prepare_model(model), prepare_model(disc)
    placement = worker_placement(rank, world)

    progress = Progress(f"cfp ({config.attribute})", total=config.epochs, start=start_epoch)
    for epoch in range(start_epoch, config.epochs):
        seed_everything(config.seed + 1000 * epoch, rank)
        batches = data.train_batches(epoch, config.seed, config.batch_size, rank, world, config.samples_per_user)
        metrics = adversarial_epoch(model, disc, raw_model, raw_disc, opt_p, opt_d, batches, config, epoch, world)
        elapsed = metrics["train_seconds"]
        metrics = _allreduce_mean({k: v for k, v in metrics.items() if k != "train_seconds"}, world)
        metrics["examples_per_s"] *= world  # throughput of the whole group
        metrics.update(epoch=epoch, phase="warmup" if epoch < config.disc_warmup_epochs else "adversarial")
        metrics["train_seconds"] = elapsed
        # ranks must hold the same prompts and the same adversary (parameters and BatchNorm stats)
        shared = [*raw_model.prompt_parameters(), *raw_disc.parameters(), *raw_disc.buffers()]
        metrics["rank_spread"] = rank_spread(shared, world)
        if rank != 0:
            context.report(metrics)
            continue
        if config.eval_every_epoch:
            valid = evaluate_cfp(raw_model, data.users("valid"), config, "valid")
            metrics.update({f"valid_{k}": v for k, v in valid.items()})
        progress.update(epoch + 1, **_headline(metrics))
        folder = context.new_checkpoint_dir(epoch)
        torch.save(
            {
                "epoch": epoch,
                "prompt": prompt_state(raw_model),
                "discriminator": raw_disc.state_dict(),
                "opt_prompt": opt_p.state_dict(),
                "opt_disc": opt_d.state_dict(),
                "metrics": metrics,
                "workers": placement,
            },
            folder / STATE_FILE,
        )
        context.report(metrics, folder)


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("phase", "rec_loss", "disc_loss", "disc_acc", "valid_probe_auc", "valid_hit@10", "examples_per_s")
    return {k: metrics[k] for k in keep if k in metrics}

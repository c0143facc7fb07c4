"""Driver side of P5 pre-training: data, tokenizer, the Ray Train ``TorchTrainer``, export.

``train_p5(config) -> Path`` returns ``OUTPUT/model`` (HF format + tokenizer: ``load_p5`` reads
it). Re-running with the same ``output`` resumes from the latest checkpoint (Ray Train restores
its run state from ``OUTPUT/ray``; with ``num_workers=0`` the loop keeps its own checkpoint under
``OUTPUT/ray/local``). The exported model is the best validation hit@10 epoch.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from fairrec_ray.cli import init_ray, write_json_atomic
from fairrec_ray.config import claim_output
from fairrec_ray.console import attach_log_file, detach_log_file
from fairrec_ray.data import LeaveOneOutSplit
from fairrec_ray.data.options import write_data_spec
from fairrec_ray.data.schema import RecDataset
from fairrec_ray.errors import ConfigError, FairrecError
from fairrec_ray.p5.config import P5TrainConfig
from fairrec_ray.p5.indexing import item_numbers, user_numbers
from fairrec_ray.p5.loop import DONE_FILE, STATE_FILE, train_loop, train_loop_per_worker
from fairrec_ray.p5.model import load_p5
from fairrec_ray.p5.templates import TEMPLATES
from fairrec_ray.p5.tokenizer import P5Tokenizer, build_tokenizer
from fairrec_ray.train_context import LocalContext

log = logging.getLogger(__name__)
RUN_NAME = "p5"
LOG_FILE = "train_p5.log"
# May change when a run in the same --output is resumed (where it runs, not what it computes).
OPERATIONAL_KEYS = ("address", "num_workers", "use_gpu", "torch_threads", "crash_after_epoch")


def make_tokenizer(cfg: P5TrainConfig, dataset: RecDataset, split: LeaveOneOutSplit) -> tuple[P5Tokenizer, Any]:
    """The tokenizer (and initial weights) for training: from ``--model`` when given, else built."""
    if cfg.model:
        model, tok = load_p5(cfg.model, n_items=dataset.n_items)
        if tok.n_items != dataset.n_items:
            raise ConfigError(f"model: {cfg.model} numbers {tok.n_items} items but the dataset has {dataset.n_items}")
        return tok, model.state_dict()
    items = item_numbers(cfg.item_indexing, split.train, dataset.n_items, seed=cfg.seed)
    users = user_numbers(cfg.user_indexing, split.users, split.train, dataset.n_users, dataset.n_items, seed=cfg.seed)
    tok = build_tokenizer(
        dataset.n_users, dataset.n_items, TEMPLATES, item_numbers=items, user_numbers=users,
        user_tokens=cfg.user_indexing == "independent",
    )  # fmt: skip
    return tok, None


def train_p5(cfg: P5TrainConfig) -> Path:
    """Train (or resume) P5 with Ray Train; export the best epoch to ``OUTPUT/model``."""
    output = Path(cfg.output).resolve()
    claim_output(output, cfg, ignore=OPERATIONAL_KEYS)
    handler = attach_log_file(output / LOG_FILE)
    try:
        return _train_p5(cfg, output)
    finally:
        detach_log_file(handler)


def _train_p5(cfg: P5TrainConfig, output: Path) -> Path:
    dataset, split = cfg.load_split()
    tok, init_state = make_tokenizer(cfg, dataset, split)
    log.info(
        "p5: %s, %d users, %d items, vocab %d, preset %s, %d workers",
        dataset.name, len(split), dataset.n_items, tok.vocab_size, cfg.preset, cfg.num_workers,
    )  # fmt: skip
    loop_config: dict[str, Any] = {"config": asdict(cfg), "split": split, "tokenizer": tok, "init_state": init_state}
    start = time.perf_counter()
    if cfg.num_workers == 0:  # this process; resumes from its own latest checkpoint
        context = LocalContext(output / "ray" / "local", keep=1)  # each checkpoint carries best_model/ too
        train_loop(loop_config, context)
        latest = context.latest_checkpoint()
        wall = time.perf_counter() - start
        if latest is None:
            raise FairrecError(f"p5: training finished without a checkpoint under {context.root}")
        return _export(cfg, output, latest, wall)
    checkpoint = _fit_on_ray(cfg, output, loop_config)
    wall = time.perf_counter() - start
    with checkpoint.as_directory() as folder:
        return _export(cfg, output, Path(folder), wall)


def _fit_on_ray(cfg: P5TrainConfig, output: Path, loop_config: dict[str, Any]) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    init_ray(cfg.address)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=str(output / "ray"),
            checkpoint_config=CheckpointConfig(num_to_keep=1),  # each one carries best_model/ too
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise FairrecError(f"p5: training finished without a checkpoint under {output / 'ray'}")
    return result.checkpoint


def _export(cfg: P5TrainConfig, output: Path, ckpt: Path, wall: float) -> Path:
    """Copy the checkpoint's best model to ``OUTPUT/model`` (with its data spec) and write
    ``OUTPUT/results.json``."""
    metrics = _read_json(ckpt / DONE_FILE)
    history = _history(ckpt)
    target = output / "model"
    tmp = output / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ckpt / "best_model", tmp)
    write_data_spec(cfg, tmp)  # evaluation and serving read the data back from the model folder
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    best = max(history, key=lambda m: (m["val_hit@10"], -m["epoch"])) if history else metrics
    write_json_atomic(
        output / "results.json",
        {"model_dir": str(target), "best_epoch": best["epoch"], "best": best, "history": history, "wall_s": wall},
    )
    log.info("p5: best epoch %s (val hit@10 %.4f) -> %s", best["epoch"], best["val_hit@10"], target)
    return target


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _history(ckpt: Path) -> list[dict]:
    return torch.load(ckpt / STATE_FILE, weights_only=False)["history"]

"""The CFP job (driver side): backbone -> baseline evaluation -> Ray Train -> best epoch -> final
evaluation -> ``results.json`` + ``prompt/``.

Best epoch (declared rule): among adversarial epochs whose validation hit@10 is at least
``hit_bound`` × the backbone's, the one with the lowest validation probe AUC; if none reaches the
bound, the one with the highest validation hit@10; without per-epoch evaluation, the last epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.evaluate import HIT_KEYS, PROBE_AUC, PROBE_AUC_OVR, evaluate
from fairrec_ray.cfp.loop import STATE_FILE, DriverInputs, build_models, load_state, train_loop_per_worker
from fairrec_ray.cli import write_json_atomic
from fairrec_ray.config import config_to_dict

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
PROMPT_DIR = "prompt"
LOG_FILE = "train_cfp.log"
RUN_NAME = "cfp"


@dataclass
class EpochRecord:
    epoch: int
    metrics: dict[str, Any]
    checkpoint: Any  # ray.train.Checkpoint


def choose_best(records: list[EpochRecord], backbone_hit10: float | None, hit_bound: float, warmup: int) -> EpochRecord:
    """The declared best-epoch rule (module doc)."""
    records = sorted(records, key=lambda r: r.epoch)
    adversarial = [r for r in records if r.epoch >= warmup] or records
    if any("valid_probe_auc" not in r.metrics for r in adversarial):
        return adversarial[-1]
    floor = hit_bound * (backbone_hit10 or 0.0)
    ok = [r for r in adversarial if r.metrics.get("valid_hit@10", 0.0) >= floor]
    if ok:
        return min(ok, key=lambda r: (r.metrics["valid_probe_auc"], -r.epoch))
    return max(adversarial, key=lambda r: (r.metrics.get("valid_hit@10", 0.0), r.epoch))


def _records(result: Any, local_root: Path | None) -> list[EpochRecord]:
    from ray.train import Checkpoint

    if local_root is not None:
        checkpoints = [Checkpoint.from_directory(str(p)) for p in sorted(local_root.glob("epoch_*"))]
    else:
        checkpoints = [c for c, _ in (result.best_checkpoints or [])] or [result.checkpoint]
    records = []
    for checkpoint in checkpoints:
        if checkpoint is None:
            continue
        state = load_state(checkpoint)
        records.append(EpochRecord(state["epoch"], state["metrics"], checkpoint))
    return records


def _attach_log(output: Path) -> logging.Handler:
    handler = logging.FileHandler(output / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _headline(metrics: dict[str, float]) -> dict[str, float]:
    keys = (PROBE_AUC, PROBE_AUC_OVR, *HIT_KEYS)
    return {k: metrics[k] for k in keys if k in metrics}


def format_table(before: dict[str, float], after: dict[str, float], attribute: str) -> str:
    rows = [k for k in (PROBE_AUC, PROBE_AUC_OVR, *HIT_KEYS) if k in before or k in after]
    lines = [f"{'test (' + attribute + ')':<18}{'backbone':>10}{'CFP':>10}{'ratio':>8}"]
    for key in rows:
        b, a = before.get(key, float("nan")), after.get(key, float("nan"))
        ratio = a / b if b else float("nan")
        lines.append(f"{key:<18}{b:>10.4f}{a:>10.4f}{ratio:>8.3f}")
    return "\n".join(lines)


def run_cfp(config: CFPConfig) -> dict[str, Any]:
    """Run the whole job; returns the ``results.json`` payload."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from fairrec_ray.cfp.backbone import ensure_backbone
    from fairrec_ray.cfp.data import load_cfp_split
    from fairrec_ray.cli import init_ray

    started = time.perf_counter()
    output = Path(config.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    handler = _attach_log(output)
    try:
        log.info("cfp: output %s", output)
        init_ray(config.address)  # before pre-training, so train_p5 reuses this Ray (no second start)
        backbone_dir = ensure_backbone(config)
        t_backbone = time.perf_counter() - started

        loaded = load_cfp_split(config)  # the driver is the only process that reads the data
        # The unfair baseline through the same code: prompts built but switched off.
        model, _, data = build_models(config, str(backbone_dir), loaded=loaded)
        baseline_valid = evaluate(model, data, config, "valid", prompt=False) if config.eval_every_epoch else {}
        baseline = evaluate(model, data, config, "test", prompt=False)
        log.info("cfp: backbone test %s", _headline(baseline))
        del model

        # Workers get the backbone and data from here, not from a path: only `storage` must be shared.
        inputs = ray.put(DriverInputs.read(backbone_dir, loaded))
        storage = Path(config.storage_path or output / "ray").resolve()
        local_root = storage / RUN_NAME / "local_checkpoints" if config.num_workers == 0 else None
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "config": config,
                "inputs": inputs,
                "local_checkpoint_root": str(local_root) if local_root else None,
            },
            scaling_config=ScalingConfig(
                num_workers=config.num_workers,
                use_gpu=config.use_gpu,
                resources_per_worker={"CPU": config.cpus_per_worker} if config.num_workers else None,
            ),
            run_config=RunConfig(
                name=RUN_NAME,
                storage_path=str(storage),
                failure_config=FailureConfig(max_failures=config.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=None),
            ),
        )
        t_train = time.perf_counter()
        result = trainer.fit()
        t_train = time.perf_counter() - t_train
        records = _records(result, local_root)
        if not records:
            raise RuntimeError("training reported no checkpoint")
        best = choose_best(records, baseline_valid.get("hit@10"), config.hit_bound, config.disc_warmup_epochs)
        best_state = load_state(best.checkpoint)
        fair, _, data = build_models(config, str(backbone_dir), best_state, loaded)
        final = evaluate(fair, data, config, "test", prompt=True)
        meta = {"attribute": config.attribute, "epoch": best.epoch, "backbone": str(backbone_dir)}
        fair.save_prompt(output / PROMPT_DIR, meta)
        results = {
            "config": config_to_dict(config),
            "backbone_dir": str(backbone_dir),
            "attribute": config.attribute,
            "n_classes": data.n_classes,
            "protocol": config.protocol,
            "best_epoch": best.epoch,
            "best_rule": "min valid probe AUC s.t. valid hit@10 >= hit_bound x backbone's (else max hit@10)",
            "per_epoch": [r.metrics for r in sorted(records, key=lambda r: r.epoch)],
            "backbone": {"valid": baseline_valid, "test": baseline},
            "cfp": {"test": final},
            "before": _headline(baseline),
            "after": _headline(final),
            "timing_s": {
                "backbone": t_backbone,
                "train": t_train,
                "total": time.perf_counter() - started,
            },
            "ray": {
                "num_workers": config.num_workers,
                "address": ray.get_runtime_context().gcs_address,  # the GCS the driver joined
                "driver_node_id": ray.get_runtime_context().get_node_id(),
                "workers": best_state.get("workers", []),  # rank, node_id, node_ip (best epoch's run)
            },
            "prompt_dir": str(output / PROMPT_DIR),
            "state_file": STATE_FILE,
        }
        write_json_atomic(output / RESULTS_FILE, results)
        print(format_table(results["before"], results["after"], config.attribute), flush=True)
        log.info("cfp: done in %.1fs; results in %s", results["timing_s"]["total"], output / RESULTS_FILE)
        return results
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()

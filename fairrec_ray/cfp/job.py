"""The CFP job (driver side): backbone -> baseline evaluation -> Ray Train -> best epoch -> final
evaluation -> (the λ = 0 control, the same way) -> ``results.json`` + ``prompt/``.

Users (``cfp.data``): prompts and discriminator train on the *train* users only; every per-epoch
and baseline validation number is measured on the *valid* users; every test number (backbone, CFP,
control) on the *held-out* users, whom training never sees.

Best epoch (declared rule): among adversarial epochs whose validation hit@10 is at least
``hit_bound`` × the backbone's, the one with the lowest validation probe AUC; if none reaches the
bound, the one with the highest validation hit@10; without per-epoch evaluation, the last epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.data import CFPData
from fairrec_ray.cfp.evaluate import (
    ENCODER_PROBE_AUC,
    ENCODER_PROBE_LEAK,
    HIT_KEYS,
    PROBE_AUC,
    PROBE_AUC_OVR,
    PROBE_CI,
    PROBE_LEAK,
    evaluate_cfp,
)
from fairrec_ray.cfp.loop import train_loop, train_loop_per_worker
from fairrec_ray.cfp.state import STATE_FILE, DriverInputs, build_models, load_state
from fairrec_ray.cli import write_json_atomic
from fairrec_ray.config import claim_output, config_to_dict
from fairrec_ray.console import attach_log_file, detach_log_file
from fairrec_ray.train_context import LocalContext

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
PROMPT_DIR = "prompt"
LOG_FILE = "train_cfp.log"
RUN_NAME = "cfp"
CONTROL_RUN_NAME = "cfp_control"  # the λ = 0 control's Train run, beside the CFP run in storage
HEADLINE_KEYS = (PROBE_AUC, *PROBE_CI, PROBE_LEAK, PROBE_AUC_OVR, ENCODER_PROBE_AUC, ENCODER_PROBE_LEAK, *HIT_KEYS)
# May change when a run in the same --output is resumed: where it runs, not what it computes; and
# `epochs`, so a finished run can be trained on (epochs before it are taken from its checkpoints).
OPERATIONAL_KEYS = ("address", "num_workers", "cpus_per_worker", "use_gpu", "max_failures", "storage_path", "epochs")


@dataclass
class EpochRecord:
    epoch: int
    metrics: dict[str, Any]
    state: dict[str, Any]  # the epoch's checkpoint (prompt, discriminator, optimisers, workers)


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


def _record(state: dict[str, Any]) -> EpochRecord:
    return EpochRecord(state["epoch"], state["metrics"], state)


def _train(
    config: CFPConfig, loop_config: dict[str, Any], storage: Path, run_name: str = RUN_NAME
) -> list[EpochRecord]:
    """Run the loop (in this process for ``num_workers=0``, else on Ray Train workers) and return
    every epoch's checkpoint."""
    if config.num_workers == 0:
        context = LocalContext(storage / run_name / "local_checkpoints")
        train_loop(loop_config, context)
        return [_record(load_state(folder)) for folder in context.checkpoints()]

    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=config.use_gpu,
            resources_per_worker={"CPU": config.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=None),
        ),
    )
    result = trainer.fit()
    checkpoints = [c for c, _ in (result.best_checkpoints or [])] or [result.checkpoint]
    records = []
    for checkpoint in (c for c in checkpoints if c is not None):
        with checkpoint.as_directory() as folder:
            records.append(_record(load_state(folder)))
    return records


def _headline(metrics: dict[str, float]) -> dict[str, float]:
    return {k: metrics[k] for k in HEADLINE_KEYS if k in metrics}


def format_table(
    before: dict[str, float], after: dict[str, float], attribute: str, control: dict[str, float] | None = None
) -> str:
    """backbone | CFP | ratio (| λ = 0 control): every CFP row beside its control's."""
    rows = [k for k in HEADLINE_KEYS if k in before or k in after]
    nan = float("nan")
    head = f"{'held-out (' + attribute + ')':<22}{'backbone':>10}{'CFP':>10}{'ratio':>8}"
    lines = [head + (f"{'λ=0 ctrl':>10}" if control is not None else "")]
    for key in rows:
        b, a = before.get(key, nan), after.get(key, nan)
        ratio = a / b if b else nan
        line = f"{key:<22}{b:>10.4f}{a:>10.4f}{ratio:>8.3f}"
        lines.append(line + (f"{control.get(key, nan):>10.4f}" if control is not None else ""))
    return "\n".join(lines)


def control_config(config: CFPConfig) -> CFPConfig:
    """The λ = 0 control: the same prompts trained on the recommendation loss alone."""
    return dataclasses.replace(config, discriminator_weight=0.0, control=False)


def train_and_select(
    config: CFPConfig, loop_config: dict[str, Any], storage: Path, run_name: str, backbone_valid_hit: float | None
) -> tuple[EpochRecord, list[EpochRecord], float]:
    """Train, then pick the best epoch by the declared rule (validation users only): (best,
    every epoch's record, training seconds)."""
    started = time.perf_counter()
    records = _train(config, {**loop_config, "config": config}, storage, run_name)
    if not records:
        raise RuntimeError("training reported no checkpoint")
    best = choose_best(records, backbone_valid_hit, config.hit_bound, config.disc_warmup_epochs)
    return best, sorted(records, key=lambda r: r.epoch), time.perf_counter() - started


def final_valid(
    best: EpochRecord, model: Any = None, data: CFPData | None = None, config: CFPConfig | None = None
) -> dict[str, Any]:
    """The chosen epoch's validation-user metrics (what a sweep selects on); without per-epoch
    evaluation, measured now on ``model`` (the chosen epoch's) over ``data``'s validation users."""
    measured = {k.removeprefix("valid_"): v for k, v in best.metrics.items() if k.startswith("valid_")}
    if measured or model is None or data is None:
        return measured
    return evaluate_cfp(model, data.users("valid"), config, "valid")


def run_cfp(config: CFPConfig) -> dict[str, Any]:
    """Run the whole job; returns the ``results.json`` payload."""
    import ray

    from fairrec_ray.cfp.backbone import ensure_backbone
    from fairrec_ray.cfp.data import load_cfp_split
    from fairrec_ray.cli import init_ray

    started = time.perf_counter()
    output = Path(config.output).resolve()
    claim_output(output, config, ignore=OPERATIONAL_KEYS)
    handler = attach_log_file(output / LOG_FILE)
    try:
        log.info("cfp: output %s", output)
        init_ray(config.address)  # before pre-training, so train_p5 reuses this Ray (no second start)
        backbone_dir = ensure_backbone(config)
        t_backbone = time.perf_counter() - started

        loaded = load_cfp_split(config)  # the driver is the only process that reads the data
        # The unfair baseline through the same code: prompts built but switched off.
        model, _, data = build_models(config, str(backbone_dir), loaded=loaded)
        valid_users, heldout_users = data.users("valid"), data.users("heldout")
        baseline_valid = (
            evaluate_cfp(model, valid_users, config, "valid", prompt=False) if config.eval_every_epoch else {}
        )
        baseline = evaluate_cfp(model, heldout_users, config, "test", prompt=False)
        log.info("cfp: backbone test %s", _headline(baseline))
        del model

        # Workers get the backbone and data from here, not from a path: only `storage` must be shared.
        inputs = DriverInputs.read(backbone_dir, loaded)
        storage = Path(config.storage_path or output / "ray").resolve()
        loop_config = {"config": config, "inputs": ray.put(inputs) if config.num_workers else inputs}
        best, records, t_train = train_and_select(config, loop_config, storage, RUN_NAME, baseline_valid.get("hit@10"))
        best_state = best.state
        fair, _, data = build_models(config, str(backbone_dir), best_state, loaded)
        final = evaluate_cfp(fair, data.users("heldout"), config, "test", prompt=True)
        control = None
        if config.control:  # λ = 0 itself needs no second run: the job is its own control
            control = _control(config, loop_config, storage, baseline_valid, str(backbone_dir), loaded, final, best)
        meta = {"attribute": config.attribute, "epoch": best.epoch, "backbone": str(backbone_dir)}
        fair.save_prompt(output / PROMPT_DIR, meta)
        from fairrec_ray.serve.bundle import write_job_bundle  # OUTPUT/bundle: what the server loads

        bundle_dir = write_job_bundle(output, backbone_dir, loaded[0], config, {config.attribute: output / PROMPT_DIR})
        results = {
            "config": config_to_dict(config),
            "backbone_dir": str(backbone_dir),
            "attribute": config.attribute,
            "n_classes": data.n_classes,
            "protocol": config.protocol,
            "best_epoch": best.epoch,
            "best_rule": "min valid probe AUC s.t. valid hit@10 >= hit_bound x backbone's (else max hit@10), "
            "on the validation users",
            "users": users_summary(data),
            "per_epoch": [r.metrics for r in records],
            "backbone": {"valid": baseline_valid, "test": baseline},
            "cfp": {"test": final},
            "before": _headline(baseline),
            "after": _headline(final),
            # what a sweep selects on (the chosen epoch's validation metrics) and reports (test)
            "final_valid": final_valid(best, fair, data, config),
            "final_test": _headline(final),
            "control": control,
            "timing_s": {
                "backbone": t_backbone,
                "train": t_train,
                "control_train": (control or {}).get("train_seconds", 0.0),
                "total": time.perf_counter() - started,
            },
            "ray": {
                "num_workers": config.num_workers,
                "address": ray.get_runtime_context().gcs_address,  # the GCS the driver joined
                "driver_node_id": ray.get_runtime_context().get_node_id(),
                "workers": best_state.get("workers", []),  # rank, node_id, node_ip (best epoch's run)
            },
            "prompt_dir": str(output / PROMPT_DIR),
            "bundle_dir": str(bundle_dir),
            "state_file": STATE_FILE,
        }
        write_json_atomic(output / RESULTS_FILE, results)
        print(
            format_table(results["before"], results["after"], config.attribute, control and control["after"]),
            flush=True,
        )
        log.info("cfp: done in %.1fs; results in %s", results["timing_s"]["total"], output / RESULTS_FILE)
        return results
    finally:
        detach_log_file(handler)


def users_summary(data: CFPData) -> dict[str, Any]:
    """Who trained, who selected and who was reported on (user_idx lists, for an audit)."""
    if data.partition is None:
        return {"protocol": "none: every user in training, selection and report"}
    parts = {name: data.split.users[getattr(data.partition, name)] for name in ("train", "valid", "heldout")}
    return {
        "protocol": "train users train; valid users select the epoch; held-out users are reported",
        "sizes": {k: len(v) for k, v in parts.items()},
        **{f"{k}_users": v.tolist() for k, v in parts.items()},
    }


def _control(
    config: CFPConfig,
    loop_config: dict[str, Any],
    storage: Path,
    baseline_valid: dict[str, float],
    backbone_dir: str,
    loaded: Any,
    final: dict[str, float],
    best: EpochRecord,
) -> dict[str, Any]:
    """The λ = 0 control's block: the same rule, users and evaluation as the CFP run."""
    if config.discriminator_weight == 0:
        return {"discriminator_weight": 0.0, "same_as_run": True, "best_epoch": best.epoch,
                "final_valid": final_valid(best), "after": _headline(final)}  # fmt: skip
    ctrl = control_config(config)
    log.info("cfp: training the λ = 0 control")
    c_best, c_records, seconds = train_and_select(
        ctrl, loop_config, storage, CONTROL_RUN_NAME, baseline_valid.get("hit@10")
    )
    model, _, data = build_models(ctrl, backbone_dir, c_best.state, loaded)
    test = evaluate_cfp(model, data.users("heldout"), ctrl, "test", prompt=True)
    return {
        "discriminator_weight": 0.0,
        "same_as_run": False,
        "best_epoch": c_best.epoch,
        "per_epoch": [r.metrics for r in c_records],
        "final_valid": final_valid(c_best, model, data, ctrl),
        "test": test,
        "after": _headline(test),
        "train_seconds": seconds,
    }

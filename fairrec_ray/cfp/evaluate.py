"""Evaluation of a CFP model — or of its bare backbone, through the same code (``prompt=False``):
ranking quality (``p5.evaluate.evaluate_model``, the project's one ranking evaluation) and the
fairness probe on frozen user representations (``probe.probe_auc``). Result keys are the constants
below."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from fairrec_ray.cfp.data import CFPData
from fairrec_ray.cfp.model import CFPModel
from fairrec_ray.cfp.probe import probe_auc
from fairrec_ray.p5.evaluate import RANKING_KEYS

PROBE_AUC = "probe_auc"
PROBE_AUC_OVR = "probe_auc_ovr"
HIT_KEYS = RANKING_KEYS


@torch.no_grad()
def user_representations(model: CFPModel, data: CFPData, prompt: bool = True, stage: str = "test") -> np.ndarray:
    """[n_split_users, d] mean-pooled encoder states over the user-id tokens (split order)."""
    was_training = model.training
    model.eval()
    context = contextlib.nullcontext() if prompt else model.disabled()
    out = []
    with context:
        for batch in data.user_batches(stage=stage):
            out.append(model.encode_users(batch["input_ids"], batch["attention_mask"], batch["user_token_mask"]))
    model.train(was_training)
    return torch.cat(out).float().cpu().numpy()


def fairness_metrics(
    model: CFPModel, data: CFPData, folds: int, seed: int, prompt: bool = True, stage: str = "test"
) -> dict[str, float]:
    from fairrec_ray.p5.examples import eval_rows

    features = user_representations(model, data, prompt, stage)
    users = data.split.users[eval_rows(data.split, stage)]  # the rows user_batches(stage) renders
    result = probe_auc(features, data.labels[users], folds=folds, seed=seed)
    return result.as_dict()


@torch.no_grad()
def cfp_ranking(
    model: CFPModel,
    data: CFPData,
    *,
    stage: str,
    protocol: str,
    num_beams: int,
    max_users: int | None,
    seed: int,
    prompt: bool = True,
) -> dict[str, float]:
    """hit@k / NDCG@k of the model (``prompt=False``: its bare backbone) on ``stage``."""
    from fairrec_ray.p5.evaluate import evaluate_model
    from fairrec_ray.p5.examples import eval_rows

    rows = eval_rows(data.split, stage)
    if max_users is not None and max_users < len(rows):  # an evenly spread, deterministic subset
        rows = rows[np.linspace(0, len(rows) - 1, max_users).round().astype(int)]
    was_training = model.training
    model.eval()
    context = contextlib.nullcontext() if prompt else model.disabled()
    with context:
        metrics = evaluate_model(
            model,
            data.tokenizer,
            data.split,
            protocol=protocol,  # type: ignore[arg-type]
            stage=stage,  # type: ignore[arg-type]
            num_beams=num_beams,
            rows=rows,
            max_history=data.max_history,
            seed=seed,
        )
    model.train(was_training)
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def evaluate_cfp(model: CFPModel, data: CFPData, config, stage: str, prompt: bool = True) -> dict[str, float]:
    """Probe AUC + ranking metrics at ``stage`` ("valid" or "test").

    The probe reads the ``stage``'s prompts (validation: history without the last two items) with
    other folds at "valid" (seed + 1), so the best-epoch choice (on "valid") is not made on exactly
    the numbers reported for "test"."""
    probe_seed = config.seed + (1 if stage == "valid" else 0)
    out = fairness_metrics(model, data, config.probe_folds, probe_seed, prompt, stage)
    max_users = config.eval_users if stage == "valid" else None
    out.update(
        cfp_ranking(
            model,
            data,
            stage=stage,
            protocol=config.protocol,
            num_beams=config.num_beams,
            max_users=max_users,
            seed=config.seed,
            prompt=prompt,
        )
    )
    return out

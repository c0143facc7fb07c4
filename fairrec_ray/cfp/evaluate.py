"""Evaluation of a CFP model — or of its bare backbone, through the same code (``prompt=False``):
ranking quality (``p5.generate.generate_rankings`` + ``p5.evaluate.rank_metrics``, the project's one ranking
evaluation), the outcome fairness of those rankings (``outcomes.py``) and the
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
PROBE_LEAK = "probe_leak"  # max(auc, 1 - auc)
PROBE_CI = ("probe_auc_ci_low", "probe_auc_ci_high")  # 95 % bootstrap interval over the probed users
ENCODER_PREFIX = "encoder_probe_"  # the same probe on the mean of all encoder states (reported at "test")
ENCODER_PROBE_AUC, ENCODER_PROBE_LEAK = ENCODER_PREFIX + "auc", ENCODER_PREFIX + "leak"
HIT_KEYS = RANKING_KEYS


@torch.no_grad()
def user_representations(
    model: CFPModel, data: CFPData, prompt: bool = True, stage: str = "test", all_tokens: bool = False
) -> np.ndarray:
    """[n_split_users, d] mean-pooled encoder states over the user-id tokens (split order), or over
    every input token with ``all_tokens`` (what an attacker reading the encoder could also use)."""
    was_training = model.training
    model.eval()
    context = contextlib.nullcontext() if prompt else model.disabled()
    out = []
    with context:
        for batch in data.user_batches(stage=stage):
            pool = batch["attention_mask"].bool() if all_tokens else batch["user_token_mask"]
            out.append(model.encode_users(batch["input_ids"], batch["attention_mask"], pool))
    model.train(was_training)
    return torch.cat(out).float().cpu().numpy()


def fairness_metrics(
    model: CFPModel,
    data: CFPData,
    folds: int,
    seed: int,
    prompt: bool = True,
    stage: str = "test",
    encoder_probe: bool = False,
) -> dict[str, float]:
    """Probe metrics over ``data``'s users (pass ``data.users(part)`` for one part of them)."""
    from fairrec_ray.p5.examples import eval_rows

    users = data.split.users[eval_rows(data.split, stage)]  # the rows user_batches(stage) renders
    labels = data.labels[users]
    if (labels < 0).any():
        raise ValueError("fairness_metrics: these users' labels are hidden here (held-out users in a training view)")
    out = probe_auc(user_representations(model, data, prompt, stage), labels, folds=folds, seed=seed).as_dict()
    if encoder_probe:
        features = user_representations(model, data, prompt, stage, all_tokens=True)
        out.update(probe_auc(features, labels, folds=folds, seed=seed).as_dict(ENCODER_PREFIX))
    return out


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
    groups: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """hit@k / NDCG@k of the model (``prompt=False``: its bare backbone) on ``stage``, with the
    outcome-fairness metrics of the same rankings (``outcomes.ranking_outcomes``: group gaps,
    Yao-Huang, differential fairness ε over ``data``'s attribute — or over every attribute of
    ``groups``, keys prefixed ``attr/`` — and item exposure of the top-10 lists)."""
    from fairrec_ray.p5.evaluate import rank_metrics
    from fairrec_ray.p5.examples import eval_rows
    from fairrec_ray.p5.generate import generate_rankings

    rows = eval_rows(data.split, stage)
    if max_users is not None and max_users < len(rows):  # an evenly spread, deterministic subset
        rows = rows[np.linspace(0, len(rows) - 1, max_users).round().astype(int)]
    was_training = model.training
    model.eval()
    context = contextlib.nullcontext() if prompt else model.disabled()
    with context:
        ranked = generate_rankings(
            model, data.tokenizer, data.split, protocol=protocol, stage=stage, rows=rows,  # type: ignore[arg-type]
            num_beams=num_beams, seed=seed, max_history=data.max_history,
        )  # fmt: skip
    model.train(was_training)
    metrics = {**rank_metrics(ranked.ranks), "users": float(len(ranked.rows))}
    metrics.update(ranking_fairness(ranked.items, ranked.rows, data, stage, groups))
    return metrics


def ranking_fairness(
    items: np.ndarray, rows: np.ndarray, data: CFPData, stage: str, groups: dict[str, np.ndarray] | None = None
) -> dict[str, float]:
    """``outcomes.ranking_outcomes`` of ranked ``items`` [len(rows), K] of split ``rows``; item
    popularity = counts in the stage's input histories (what the model reads)."""
    from fairrec_ray.outcomes import ranking_outcomes
    from fairrec_ray.p5.baselines import most_pop_scores
    from fairrec_ray.p5.candidates import gold_items

    n_items = data.tokenizer.n_items
    popularity = most_pop_scores(data.split, n_items, stage)[0]  # type: ignore[arg-type]
    users = data.split.users[rows]
    labels = {a: lab[users] for a, lab in groups.items()} if groups else data.labels[users]
    golds = gold_items(data.split, stage, rows)  # type: ignore[arg-type]
    return ranking_outcomes(items, golds, labels, n_items, popularity)


def evaluate_cfp(model: CFPModel, data: CFPData, config, stage: str, prompt: bool = True) -> dict[str, float]:
    """Probe AUC + ranking metrics at ``stage`` ("valid" or "test") over ``data``'s users: the
    callers pass ``data.users("valid")`` at "valid" and ``data.users("heldout")`` at "test".

    The probe reads the ``stage``'s prompts (validation: history without the last two items) with
    other folds at "valid" (seed + 1); at "test" the all-encoder-states probe is added."""
    probe_seed = config.seed + (1 if stage == "valid" else 0)
    out = fairness_metrics(model, data, config.probe_folds, probe_seed, prompt, stage, encoder_probe=stage == "test")
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

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

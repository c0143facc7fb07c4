"""Baselines scored for the same evaluator (``p5.evaluate.evaluate_scores``) on the same split and
candidates as P5: MostPop and a BPR matrix factorisation (torch, seeded). Both are fit on the
stage's *input* histories (valid: ``train``; test: ``train + [valid]``), which is exactly what P5
reads at that stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fairrec_ray.data.splits import LeaveOneOutSplit
from fairrec_ray.p5.examples import Stage, eval_history


def _pairs(split: LeaveOneOutSplit, stage: Stage) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(split))
    hists = [eval_history(split, r, stage) for r in rows]
    return np.repeat(rows, [len(h) for h in hists]), np.concatenate(hists)


def most_pop_scores(split: LeaveOneOutSplit, n_items: int, stage: Stage = "test") -> np.ndarray:
    """``[n_rows, n_items]``: every user gets the item counts of the stage's input histories."""
    _, items = _pairs(split, stage)
    counts = np.bincount(items, minlength=n_items).astype(np.float64)
    return np.broadcast_to(counts, (len(split), n_items))


@dataclass(frozen=True)
class BPRConfig:
    dim: int = 64
    epochs: int = 40
    lr: float = 5e-3
    l2: float = 1e-5
    batch_size: int = 2048
    seed: int = 0


def bpr_scores(
    split: LeaveOneOutSplit, n_items: int, stage: Stage = "test", cfg: BPRConfig = BPRConfig()
) -> np.ndarray:
    """BPR-MF (Rendle et al. 2009): maximise ``log σ(u·i − u·j)`` for an observed i and a sampled
    unobserved j; item biases included. Returns ``[n_rows, n_items]`` scores."""
    gen = torch.Generator().manual_seed(cfg.seed)
    rows, items = _pairs(split, stage)
    users_t, items_t = torch.from_numpy(rows), torch.from_numpy(items)
    seen = torch.zeros(len(split), n_items, dtype=torch.bool)
    seen[users_t, items_t] = True
    user_emb = torch.nn.Parameter(torch.randn(len(split), cfg.dim, generator=gen) * 0.1)
    item_emb = torch.nn.Parameter(torch.randn(n_items, cfg.dim, generator=gen) * 0.1)
    item_bias = torch.nn.Parameter(torch.zeros(n_items))
    opt = torch.optim.Adam([user_emb, item_emb, item_bias], lr=cfg.lr)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(users_t), generator=gen)
        for lo in range(0, len(order), cfg.batch_size):
            idx = order[lo : lo + cfg.batch_size]
            u, i = users_t[idx], items_t[idx]
            j = torch.randint(n_items, (len(idx),), generator=gen)
            resample = seen[u, j]
            j[resample] = torch.randint(n_items, (int(resample.sum()),), generator=gen)  # one retry is enough
            pu, qi, qj = user_emb[u], item_emb[i], item_emb[j]
            diff = (pu * (qi - qj)).sum(-1) + item_bias[i] - item_bias[j]
            reg = cfg.l2 * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum())
            loss = -torch.nn.functional.logsigmoid(diff).mean() + reg / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return (user_emb @ item_emb.T + item_bias).numpy().astype(np.float64)

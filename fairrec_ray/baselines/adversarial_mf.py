"""Adversarially filtered BPR-MF: a classic fairness baseline for CFP, in the style of the
compositional fairness filters (Bose & Hamilton 2019) that RecBole-FairRec ships as PFCN.

Model (pure torch, seeded): user embeddings ``e_u``, a filter MLP ``f`` (``d -> hidden -> d``),
item embeddings ``q_i`` and biases ``b_i``; the score is ``f(e_u) . q_i + b_i``. A
discriminator MLP ``D`` predicts the sensitive attribute from ``f(e_u)``. Each mini-batch of BPR
triples (u, i, j) alternates:

1. discriminator step: minimise the class-balanced cross-entropy ``CE(D(f(e_u)).detach-input, a_u)``;
2. recommender step: minimise ``BPR + l2 + adv_weight * confusion`` over ``e, f, q, b``, where
   ``confusion = -mean_c log D(f(e_u))_c`` is the cross-entropy of the discriminator's output
   against the uniform distribution (minimal when D cannot tell the classes apart). Maximising
   D's own cross-entropy instead (``- adv_weight * CE``, as in the original filters) lets the
   filter *flip* the labels, which a fresh probe reads just as well; the confusion target does not.

The first ``warmup_epochs`` are plain BPR (the adversary joins a model that already ranks).
``adv_weight = 0`` is the plain BPR-MF with the same architecture (the unfair row of the table).
The representation that is probed is ``f(e_u)``, the one that scores items.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fairrec_ray.errors import ConfigError


@dataclass(frozen=True)
class AdvMFConfig:
    dim: int = 64
    hidden: int = 128
    epochs: int = 40
    lr: float = 5e-3
    disc_lr: float = 5e-3
    l2: float = 1e-5
    batch_size: int = 2048
    adv_weight: float = 1.0  # λ; 0 = plain BPR-MF
    warmup_epochs: int = 5  # plain BPR epochs before the adversary starts (as CFP's disc warm-up)
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("dim", "hidden", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: got {getattr(self, key)}; must be >= 1")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs: got {self.warmup_epochs}; must be >= 0")
        if self.lr <= 0 or self.disc_lr <= 0 or self.l2 < 0 or self.adv_weight < 0:
            raise ConfigError("lr/disc_lr: must be > 0; l2/adv_weight: must be >= 0")


class FilteredMF(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_classes: int, cfg: AdvMFConfig, gen: torch.Generator):
        super().__init__()
        self.user = nn.Parameter(torch.randn(n_users, cfg.dim, generator=gen) * 0.1)
        self.item = nn.Parameter(torch.randn(n_items, cfg.dim, generator=gen) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_items))
        self.filter = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.LeakyReLU(), nn.Linear(cfg.hidden, cfg.dim))
        self.disc = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.LeakyReLU(), nn.Linear(cfg.hidden, n_classes))

    def users(self, u: torch.Tensor | None = None) -> torch.Tensor:
        """Filtered user representations ``f(e_u)``, all users when ``u`` is None."""
        return self.filter(self.user if u is None else self.user[u])

    def scores(self) -> torch.Tensor:
        return self.users() @ self.item.T + self.bias


@dataclass
class AdvMFResult:
    model: FilteredMF
    history: list[dict[str, float]]  # per epoch: bpr, disc_ce, disc_acc
    seconds: float
    triples: int  # training triples processed


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """``n / (C_present * n_c)`` per class (0 for a class with no user): balanced cross-entropy."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = (counts > 0).sum()
    w = np.where(counts > 0, len(labels) / (present * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def train_adversarial_mf(
    users: np.ndarray, items: np.ndarray, labels: np.ndarray, n_items: int, cfg: AdvMFConfig
) -> AdvMFResult:
    """Fit on interactions ``(users[k], items[k])`` (user = row 0..n_users-1); ``labels`` [n_users]
    are the attribute classes 0..C-1 the discriminator is trained on, ``-1`` for a user whose label
    the adversary must not see (such users still get embeddings; neither loss reads their label)."""
    labels = np.asarray(labels, dtype=np.int64)
    n_users, n_classes = len(labels), int(labels.max()) + 1
    if n_classes < 2:
        raise ConfigError(f"labels: the discriminator needs labelled users of >= 2 classes; got {n_classes}")
    if len(users) != len(items) or not len(users):
        raise ConfigError(f"interactions: got {len(users)} users and {len(items)} items; need equal, non-zero")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # the MLPs' initialisation
    model = FilteredMF(n_users, n_items, n_classes, cfg, gen)
    users_t, items_t = torch.as_tensor(users, dtype=torch.long), torch.as_tensor(items, dtype=torch.long)
    labels_t = torch.as_tensor(labels)
    seen = torch.zeros(n_users, n_items, dtype=torch.bool)
    seen[users_t, items_t] = True
    ce = nn.CrossEntropyLoss(weight=class_weights(labels[labels >= 0], n_classes))
    rec_params = [model.user, model.item, model.bias, *model.filter.parameters()]
    opt = torch.optim.Adam(rec_params, lr=cfg.lr)
    opt_d = torch.optim.Adam(model.disc.parameters(), lr=cfg.disc_lr)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(cfg.epochs):
        adversarial_epoch = cfg.adv_weight > 0 and epoch >= cfg.warmup_epochs
        order = torch.randperm(len(users_t), generator=gen)
        sums = {"bpr": 0.0, "disc_ce": 0.0, "disc_acc": 0.0}
        batches = 0
        for lo in range(0, len(order), cfg.batch_size):
            idx = order[lo : lo + cfg.batch_size]
            u, i = users_t[idx], items_t[idx]
            j = torch.randint(n_items, (len(idx),), generator=gen)
            resample = seen[u, j]
            j[resample] = torch.randint(n_items, (int(resample.sum()),), generator=gen)
            uu = torch.unique(u)
            uu = uu[labels_t[uu] >= 0]  # only users whose label the adversary may see
            adversarial = adversarial_epoch and len(uu) > 1
            if adversarial:  # 1. the discriminator catches up on the current filter
                logits = model.disc(model.users(uu).detach())
                loss_d = ce(logits, labels_t[uu])
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
            pu, qi, qj = model.users(u), model.item[i], model.item[j]
            diff = (pu * (qi - qj)).sum(-1) + model.bias[i] - model.bias[j]
            bpr = -nn.functional.logsigmoid(diff).mean()
            reg = cfg.l2 * (model.user[u].pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / len(idx)
            loss = bpr + reg
            if adversarial:  # 2. the filter hides the attribute from the (fixed) discriminator
                logits = model.disc(model.users(uu))
                confusion = -nn.functional.log_softmax(logits, dim=1).mean()
                loss = loss + cfg.adv_weight * confusion
                sums["disc_ce"] += float(ce(logits.detach(), labels_t[uu]))
                sums["disc_acc"] += float((logits.detach().argmax(1) == labels_t[uu]).float().mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums["bpr"] += float(bpr.detach())
            batches += 1
        history.append({k: v / max(batches, 1) for k, v in sums.items()})
    model.eval()
    return AdvMFResult(model, history, time.perf_counter() - started, cfg.epochs * len(users_t))

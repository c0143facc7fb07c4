"""Attribute discriminator on user representations (the adversary CFP trains against).

The paper's discriminator is a deep MLP with BatchNorm + LeakyReLU; we keep that shape with a
configurable depth. Binary attributes use one logit and BCE-with-logits; multi-class attributes
use C logits and cross-entropy on the logits (softmax applied once, inside the loss).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Discriminator(nn.Module):
    def __init__(self, dim: int, n_classes: int, hidden: int = 128, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"discriminator needs >= 2 classes, got {n_classes}")
        self.n_classes = n_classes
        blocks: list[nn.Module] = []
        width = dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, 1 if n_classes == 2 else n_classes))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: [B] for a binary attribute, [B, C] otherwise."""
        out = self.net(x)
        return out.squeeze(-1) if self.n_classes == 2 else out


def discriminator_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits for [B] logits, cross-entropy for [B, C] logits (mean over the batch)."""
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return F.cross_entropy(logits, labels.long())


def discriminator_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    predicted = (logits > 0).long() if logits.dim() == 1 else logits.argmax(-1)
    return float((predicted == labels.long()).float().mean())


def adversary_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "uniform") -> torch.Tensor:
    """The prompts' adversarial term (minimised by the prompts, weighted by λ).

    ``negative``: ``−L_disc`` (the paper's ``L_rec − λ·L_disc``). Unbounded: the prompts gain by
    making the discriminator *confidently wrong*, e.g. flipping its prediction, which still encodes
    the attribute (a fresh probe reads it back).
    ``uniform``: cross-entropy between the discriminator's predicted distribution and the uniform
    class distribution (confusion), minus its minimum ``log C``, so it is 0 when the discriminator
    is maximally unsure; bounded, and it rewards removing the information, not inverting it.
    """
    if kind == "negative":
        return -discriminator_loss(logits, labels)
    if kind != "uniform":
        raise ValueError(f"adversary_loss: got {kind!r}; expected negative or uniform")
    if logits.dim() == 1:
        target = torch.full_like(logits, 0.5)
        return F.binary_cross_entropy_with_logits(logits, target) - math.log(2.0)
    return -F.log_softmax(logits, dim=-1).mean(-1).mean() - math.log(logits.shape[-1])

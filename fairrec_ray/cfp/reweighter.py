"""Prompt Token Reweighter: self-attention among the prefix tokens on top of the FFN output.

The reparameterisation FFN maps each prefix token independently; the reweighter lets every token
re-weight itself against the others (UP5, sec. 4.2):

    A   = softmax(Q Kᵀ / √r),   Q = X W_q,  K = X W_k      (X: [P, D] FFN output, r = attn_dim)
    out = X + γ · A X

γ is a learned scalar initialised at 0, so the reweighter starts as the identity (the FFN's prefix
is untouched at step 0) and the ablation without it differs only by what it learns.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PromptTokenReweighter(nn.Module):
    def __init__(self, dim: int, attn_dim: int = 64) -> None:
        super().__init__()
        self.query = nn.Linear(dim, attn_dim)
        self.key = nn.Linear(dim, attn_dim)
        self.gamma = nn.Parameter(torch.zeros(()))
        self.scale = 1.0 / math.sqrt(attn_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [B, P, D] prefix tokens -> same shape."""
        weights = torch.softmax(self.query(x) @ self.key(x).transpose(-1, -2) * self.scale, dim=-1)
        return x + self.gamma * (weights @ x)

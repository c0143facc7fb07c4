"""Prompt examples from a ``LeaveOneOutSplit`` and the collator that tensorises them.

Templates (ids as in the P5 paper, see ``templates.py``):

- **train** (multitask, re-drawn every epoch with ``seed + epoch``): *sequential* — for each user
  and each position t >= 1 of the training sequence, history = the previous (at most
  ``max_history``) items, target = item t, template drawn from ``TRAIN_SEQUENTIAL`` (2-1…2-6; the
  optional 2-7/2-8 also list ``n_candidates`` candidates: the target + negatives); *direct* — ``direct_per_user``
  examples per user from ``TRAIN_DIRECT``: pick the positive from ``n_candidates`` candidates
  (5-5…5-8) or answer yes/no for a positive/negative item (5-1, 5-2, 5-4). Negatives are items
  outside the user's training items.
- **valid / test**: template ``2-1``; history = every interaction before the held-out item (valid:
  ``train``; test: ``train + [valid]``), last ``max_history`` of them; target = the held-out item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fairrec_ray.data.splits import NO_ITEM, LeaveOneOutSplit
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5.templates import EVAL_TEMPLATE, NO, TEMPLATES, TRAIN_DIRECT, TRAIN_SEQUENTIAL, YES
from fairrec_ray.p5.tokenizer import P5Tokenizer

Stage = Literal["train", "valid", "test"]
IGNORE_INDEX = -100


@dataclass(frozen=True)
class PromptExample:
    source: str
    target: str
    user_idx: int
    row: int  # row of the user in the split
    template: str
    gold: int = -1  # item_idx of the target item (-1 for yes/no targets)


@dataclass(frozen=True)
class ExampleConfig:
    max_history: int = 20
    n_candidates: int = 10  # the paper lists 100; fewer keeps CPU prompts short
    direct_per_user: int = 2
    max_seq_per_user: int = 0  # 0 = every position (the paper); >0 samples that many per epoch
    sequential_templates: tuple[str, ...] = TRAIN_SEQUENTIAL
    direct_templates: tuple[str, ...] = TRAIN_DIRECT

    def __post_init__(self) -> None:
        for name in ("max_history", "n_candidates"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: got {getattr(self, name)}; must be >= 1")
        for name in ("direct_per_user", "max_seq_per_user"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; must be >= 0")
        for tid in (*self.sequential_templates, *self.direct_templates):
            if tid not in TEMPLATES:
                raise ConfigError(f"templates: unknown template id {tid!r}; known: {', '.join(TEMPLATES)}")


def _negatives(rng: np.random.Generator, exclude: set[int], n_items: int, k: int) -> list[int]:
    """``k`` distinct items outside ``exclude`` (rejection sampling; falls back to a full scan)."""
    if n_items - len(exclude) < k:
        pool = np.setdiff1d(np.arange(n_items), np.fromiter(exclude, np.int64, len(exclude)))
        return rng.choice(pool, size=min(k, len(pool)), replace=False).tolist()
    out: list[int] = []
    seen = set(exclude)
    while len(out) < k:
        for item in rng.integers(n_items, size=2 * k).tolist():
            if item not in seen:
                seen.add(item)
                out.append(item)
                if len(out) == k:
                    break
    return out


def _render(tok: P5Tokenizer, tid: str, user: int, row: int, target: int, **fields: str) -> PromptExample:
    template = TEMPLATES[tid]
    source = template.render(user=tok.user_text(user), **fields)
    return PromptExample(source, tok.item_text(target), user, row, tid, target)


def train_examples(
    split: LeaveOneOutSplit, tok: P5Tokenizer, config: ExampleConfig, seed: int, epoch: int = 0
) -> list[PromptExample]:
    """One epoch of multitask training prompts (deterministic in ``seed`` and ``epoch``)."""
    rng = np.random.default_rng([seed, epoch])
    n_items, cfg, out = tok.n_items, config, []
    for row, (user, seq) in enumerate(zip(split.users.tolist(), split.train)):
        seq = seq.tolist()
        owned = set(seq)
        positions = range(1, len(seq))
        if cfg.max_seq_per_user and len(positions) > cfg.max_seq_per_user:
            positions = sorted(rng.choice(positions, size=cfg.max_seq_per_user, replace=False).tolist())
        for t in positions:
            tid = cfg.sequential_templates[rng.integers(len(cfg.sequential_templates))]
            fields = {"history": tok.items_text(seq[max(0, t - cfg.max_history) : t])}
            if "candidates" in TEMPLATES[tid].needs:
                fields["candidates"] = _candidates(rng, seq[t], owned, n_items, cfg.n_candidates, tok)
            out.append(_render(tok, tid, user, row, seq[t], **fields))
        for _ in range(cfg.direct_per_user if cfg.direct_templates else 0):
            tid = cfg.direct_templates[rng.integers(len(cfg.direct_templates))]
            gold = seq[rng.integers(len(seq))]
            if TEMPLATES[tid].target == "yes_no":
                positive = bool(rng.random() < 0.5)
                item = gold if positive else _negatives(rng, owned, n_items, 1)[0]
                source = TEMPLATES[tid].render(user=tok.user_text(user), item=tok.item_text(item))
                out.append(PromptExample(source, YES if positive else NO, user, row, tid))
            else:
                cands = _candidates(rng, gold, owned, n_items, cfg.n_candidates, tok)
                out.append(_render(tok, tid, user, row, gold, candidates=cands))
    return out


def _candidates(rng: np.random.Generator, gold: int, owned: set[int], n_items: int, n: int, tok: P5Tokenizer) -> str:
    cands = [gold, *_negatives(rng, owned, n_items, n - 1)]
    rng.shuffle(cands)
    return tok.items_text(cands)


def eval_history(split: LeaveOneOutSplit, row: int, stage: Stage) -> np.ndarray:
    """The model's input history for ``stage``: valid reads ``train``; test ``train + [valid]``."""
    return split.train[row] if stage == "valid" else split.test_history(row)


def eval_rows(split: LeaveOneOutSplit, stage: Stage) -> np.ndarray:
    """Rows evaluated at ``stage`` (valid skips users without a validation item)."""
    if stage == "valid":
        return np.flatnonzero(split.valid != NO_ITEM)
    return np.arange(len(split))


def eval_examples(
    split: LeaveOneOutSplit, tok: P5Tokenizer, stage: Stage, max_history: int = 20, rows: Sequence[int] | None = None
) -> list[PromptExample]:
    """Template 2-1 prompts for ``stage`` ("valid" or "test")."""
    if stage not in ("valid", "test"):
        raise ConfigError(f"stage: got {stage!r}; expected 'valid' or 'test'")
    golds = split.valid if stage == "valid" else split.test
    rows = eval_rows(split, stage) if rows is None else rows
    out = []
    for row in rows:
        hist = eval_history(split, int(row), stage)[-max_history:]
        gold = int(golds[row])
        out.append(_render(tok, EVAL_TEMPLATE, int(split.users[row]), int(row), gold, history=tok.items_text(hist)))
    return out


class P5Collator:
    """Batch = ``input_ids``, ``attention_mask``, ``labels`` (-100 padded), ``user_token_mask``
    (True on the sub-tokens of the user id ``user_23`` in the prompt) and ``user_idx`` [B]."""

    def __init__(self, tokenizer: P5Tokenizer, max_source_len: int = 512):
        self.tok = tokenizer
        self.max_source_len = max_source_len

    def __call__(self, examples: Sequence[PromptExample]) -> dict[str, torch.Tensor]:
        encs = self.tok.tokenizer.encode_batch([e.source for e in examples])
        targets = self.tok.encode_batch([e.target for e in examples])
        n_src = min(self.max_source_len, max(len(e.ids) for e in encs))
        n_tgt = max(len(t) for t in targets)
        b = len(examples)
        input_ids = torch.full((b, n_src), self.tok.pad_id, dtype=torch.long)
        attention = torch.zeros((b, n_src), dtype=torch.long)
        user_mask = torch.zeros((b, n_src), dtype=torch.bool)
        labels = torch.full((b, n_tgt), IGNORE_INDEX, dtype=torch.long)
        for i, (ex, enc, tgt) in enumerate(zip(examples, encs, targets)):
            ids = enc.ids[:n_src]
            if len(enc.ids) > n_src:
                ids[-1] = self.tok.eos_id
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            labels[i, : len(tgt)] = torch.tensor(tgt)
            user = self.tok.user_text(ex.user_idx)
            start = ex.source.find(user)
            if start >= 0:
                end = start + len(user)
                for j, (a, z) in enumerate(enc.offsets[: len(ids)]):
                    if a >= start and z <= end and z > a:
                        user_mask[i, j] = True
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "user_token_mask": user_mask,
            "user_idx": torch.tensor([e.user_idx for e in examples], dtype=torch.long),
        }

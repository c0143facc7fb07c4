"""Prompt examples from a ``LeaveOneOutSplit`` and the collator that tensorises them.

Templates (ids as in the P5 paper, see ``templates.py``):

- **train** (multitask, re-drawn every epoch with ``seed + epoch``): *sequential* — for each user
  and each position t >= 1 of the training sequence, history = the previous (at most
  ``max_history``) items, target = item t, template drawn from ``TRAIN_SEQUENTIAL`` (2-1…2-6; the
  optional 2-7/2-8 also list ``n_candidates`` candidates: the target + negatives); *direct* — ``direct_per_user``
  examples per user from ``TRAIN_DIRECT``: pick the positive from ``n_candidates`` candidates
  (5-5…5-8) or answer yes/no for a positive/negative item (5-1, 5-2, 5-4). Negatives are items
  outside the user's training and held-out items.
- **train with a family mix** (``prompts_per_user > 0``, UP5's MovieLens recipe): every user gets
  ``prompts_per_user`` prompts per epoch, split over the four families in proportion to ``mix``
  (``family_counts``): *sequential* (as above; positions sampled, with repeats once all are used),
  *history* (2-14/2-17/2-18, user-only: target = a contiguous window of ``history_items`` items of
  the training sequence), *yes_no* (5-1…5-4, user-only: a training item -> ``yes``, a sampled
  non-training item -> ``no``, half each) and *choice* (5-5…5-8: the positive among sampled
  negatives). Every target and positive comes from ``split.train`` only; negatives avoid all of the
  user's items (training and held-out, as P5/UP5 do), so the validation and test items never enter
  a training prompt.
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
from fairrec_ray.p5.templates import (
    EVAL_TEMPLATE,
    NO,
    TEMPLATES,
    TRAIN_CHOICE,
    TRAIN_DIRECT,
    TRAIN_HISTORY,
    TRAIN_SEQUENTIAL,
    TRAIN_YES_NO,
    YES,
)
from fairrec_ray.p5.tokenizer import P5Tokenizer

Stage = Literal["train", "valid", "test"]
IGNORE_INDEX = -100
FAMILIES: tuple[str, ...] = ("sequential", "history", "yes_no", "choice")  # the order of ``mix``


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
    # family mix: 0 = the sizes above (every sequential position + direct_per_user); > 0 = this many
    # prompts per user and epoch, split over FAMILIES by the weights ``mix``
    prompts_per_user: int = 0
    mix: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)
    history_items: int = 5  # items in a history-family target

    def __post_init__(self) -> None:
        check_mix(self.mix)
        if self.prompts_per_user < 0:
            raise ConfigError(f"prompts_per_user: got {self.prompts_per_user}; must be >= 0")
        for name in ("max_history", "n_candidates", "history_items"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: got {getattr(self, name)}; must be >= 1")
        for name in ("direct_per_user", "max_seq_per_user"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; must be >= 0")
        for tid in (*self.sequential_templates, *self.direct_templates):
            if tid not in TEMPLATES:
                raise ConfigError(f"templates: unknown template id {tid!r}; known: {', '.join(TEMPLATES)}")


def check_mix(mix: Sequence[float]) -> None:
    """One-line ConfigError unless ``mix`` is one non-negative weight per family, not all zero."""
    if len(mix) != len(FAMILIES):
        raise ConfigError(f"mix: got {len(mix)} weights; expected {len(FAMILIES)} ({', '.join(FAMILIES)})")
    for name, w in zip(FAMILIES, mix):
        if not w >= 0:  # also rejects NaN
            raise ConfigError(f"mix: weight of {name} is {w}; weights must be >= 0")
    if sum(mix) <= 0:
        raise ConfigError(f"mix: all weights are 0 ({', '.join(FAMILIES)}); give at least one family a weight > 0")


def family_counts(total: int, mix: Sequence[float]) -> list[int]:
    """Split ``total`` prompts over the families in proportion to ``mix`` (largest remainder; ties
    to the earlier family), so the counts sum to ``total`` exactly."""
    check_mix(mix)
    weights = np.asarray(mix, dtype=np.float64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts.tolist()


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
    cfg, out = config, []
    counts = family_counts(cfg.prompts_per_user, cfg.mix) if cfg.prompts_per_user else None
    for row, (user, seq) in enumerate(zip(split.users.tolist(), split.train)):
        seq = seq.tolist()
        # negatives avoid every item of the user (as in P5/UP5): training and held-out ones
        owned = set(seq) | ({int(split.valid[row]), int(split.test[row])} - {NO_ITEM})
        positions = list(range(1, len(seq)))
        if counts is None:  # the paper's sizes: every position (or max_seq_per_user), direct_per_user
            if cfg.max_seq_per_user and len(positions) > cfg.max_seq_per_user:
                positions = sorted(rng.choice(positions, size=cfg.max_seq_per_user, replace=False).tolist())
            out += _sequential(rng, tok, cfg, user, row, seq, owned, positions)
            for _ in range(cfg.direct_per_user if cfg.direct_templates else 0):
                out.append(_direct(rng, tok, cfg, cfg.direct_templates, user, row, seq, owned))
            continue
        n_seq, n_hist, n_yes_no, n_choice = counts
        out += _sequential(rng, tok, cfg, user, row, seq, owned, _sample_positions(rng, positions, n_seq))
        for _ in range(n_hist):
            out.append(_history(rng, tok, cfg, user, row, seq))
        for templates, n in ((TRAIN_YES_NO, n_yes_no), (TRAIN_CHOICE, n_choice)):
            for _ in range(n):
                out.append(_direct(rng, tok, cfg, templates, user, row, seq, owned))
    return out


def _sample_positions(rng: np.random.Generator, positions: list[int], n: int) -> list[int]:
    """``n`` target positions: without repeats while they last, then drawn again with repeats."""
    if not positions or n == 0:
        return []
    if n <= len(positions):
        return sorted(rng.choice(positions, size=n, replace=False).tolist())
    extra = rng.choice(positions, size=n - len(positions), replace=True).tolist()
    return sorted(positions + extra)


def _sequential(rng, tok: P5Tokenizer, cfg: ExampleConfig, user: int, row: int, seq: list[int], owned, positions):
    out = []
    for t in positions:
        tid = cfg.sequential_templates[rng.integers(len(cfg.sequential_templates))]
        fields = {"history": tok.items_text(seq[max(0, t - cfg.max_history) : t])}
        if "candidates" in TEMPLATES[tid].needs:
            fields["candidates"] = _candidates(rng, seq[t], owned, tok.n_items, cfg.n_candidates, tok)
        out.append(_render(tok, tid, user, row, seq[t], **fields))
    return out


def _history(rng, tok: P5Tokenizer, cfg: ExampleConfig, user: int, row: int, seq: list[int]) -> PromptExample:
    """User-only: "What is the interaction history of user_N ?" -> a window of training items."""
    tid = TRAIN_HISTORY[rng.integers(len(TRAIN_HISTORY))]
    k = min(cfg.history_items, len(seq))
    start = int(rng.integers(len(seq) - k + 1))
    source = TEMPLATES[tid].render(user=tok.user_text(user))
    return PromptExample(source, tok.items_text(seq[start : start + k]), user, row, tid)


def _direct(rng, tok: P5Tokenizer, cfg: ExampleConfig, templates, user: int, row: int, seq: list[int], owned):
    """A yes/no (positive or sampled negative item) or candidate-choice prompt for a training item."""
    tid = templates[rng.integers(len(templates))]
    gold = seq[rng.integers(len(seq))]
    if TEMPLATES[tid].target == "yes_no":
        negative = _negatives(rng, owned, tok.n_items, 1) if rng.random() >= 0.5 else []
        positive = not negative  # also when the user has every item (no negative exists)
        item = gold if positive else negative[0]
        source = TEMPLATES[tid].render(user=tok.user_text(user), item=tok.item_text(item))
        return PromptExample(source, YES if positive else NO, user, row, tid)
    cands = _candidates(rng, gold, owned, tok.n_items, cfg.n_candidates, tok)
    return _render(tok, tid, user, row, gold, candidates=cands)


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
    (True on the sub-tokens of the user id ``user_23`` in the prompt; all False with
    ``user_mask=False``, which skips locating it) and ``user_idx`` [B]."""

    def __init__(self, tokenizer: P5Tokenizer, max_source_len: int = 512, user_mask: bool = True):
        self.tok = tokenizer
        self.max_source_len = max_source_len
        self.user_mask = user_mask

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
            start = ex.source.find(user) if self.user_mask else -1
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

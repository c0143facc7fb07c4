"""Batched, trie-constrained beam search for P5 (and any HF seq2seq model with ``.generate``, a
CFP model with its prompts included); the metrics over its ranks are in ``p5/evaluate.py``.

Each user's prompt (template 2-1, see ``examples.py``) is decoded with ``num_beams`` beams (20, as
the paper) whose tokens are restricted to the ids of the user's candidate items
(``candidates.py``); the returned beams, ordered by their summed log-probability
(``length_penalty=0``: the item's exact sequence probability, so 1- and 2-token ids compete
fairly), are the ranking. The gold's 0-based position among them is its rank, -1 if absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import LogitsProcessorList

from fairrec_ray.data.splits import LeaveOneOutSplit
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5.candidates import Protocol, candidate_mask, gold_items
from fairrec_ray.p5.examples import P5Collator, Stage, eval_examples, eval_rows
from fairrec_ray.p5.tokenizer import P5Tokenizer
from fairrec_ray.p5.trie import ItemTrie, TrieConstraint


@dataclass
class Ranked:
    rows: np.ndarray  # split rows, in evaluation order
    items: np.ndarray  # [n, num_beams] ranked item_idx, -1 where a beam was invalid/empty
    ranks: np.ndarray  # [n] 0-based rank of the gold, -1 when absent


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_rankings(
    model: torch.nn.Module,
    tokenizer: P5Tokenizer,
    split: LeaveOneOutSplit,
    *,
    protocol: Protocol,
    stage: Stage = "test",
    rows: Sequence[int] | None = None,
    batch_size: int = 32,
    num_beams: int = 20,
    seed: int = 0,
    max_history: int = 20,
    trie: ItemTrie | None = None,
) -> Ranked:
    """Rank the candidates of ``rows`` (default: every row of ``stage``) with constrained beams."""
    if batch_size < 2:
        raise ConfigError(f"batch_size: got {batch_size}; evaluation is batched, use >= 2")
    if num_beams < 1:
        raise ConfigError(f"num_beams: got {num_beams}; must be >= 1")
    rows = eval_rows(split, stage) if rows is None else np.asarray(rows, dtype=np.int64)
    trie = trie or ItemTrie(tokenizer.item_token_ids(), tokenizer.eos_id, tokenizer.vocab_size)
    lookup = tokenizer.item_lookup()
    collate = P5Collator(tokenizer)
    device = _device(model)
    was_training = model.training
    model.eval()
    all_items = np.full((len(rows), num_beams), -1, dtype=np.int64)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        mask = candidate_mask(split, protocol, stage, chunk, tokenizer.n_items, seed)
        batch = collate(eval_examples(split, tokenizer, stage, max_history, rows=chunk))
        all_items[start : start + len(chunk)] = beam_items(
            model, tokenizer, batch["input_ids"].to(device), batch["attention_mask"].to(device), mask, trie,
            num_beams, lookup,
        )  # fmt: skip
    model.train(was_training)
    golds = gold_items(split, stage, rows)
    hit = all_items == golds[:, None]
    ranks = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    return Ranked(rows, all_items, ranks)


@torch.no_grad()
def beam_items(
    model: torch.nn.Module,
    tokenizer: P5Tokenizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    mask: np.ndarray,
    trie: ItemTrie,
    num_beams: int,
    lookup: dict[tuple[int, ...], int] | None = None,
) -> np.ndarray:
    """``[B, num_beams]`` item_idx ranked by beam score; only items with ``mask[b, item]``; -1 pads."""
    return scored_beam_items(model, tokenizer, input_ids, attention_mask, mask, trie, num_beams, lookup)[0]


@torch.no_grad()
def scored_beam_items(
    model: torch.nn.Module,
    tokenizer: P5Tokenizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    mask: np.ndarray,
    trie: ItemTrie,
    num_beams: int,
    lookup: dict[tuple[int, ...], int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``beam_items`` with each item's beam score (its summed log-probability; -inf pads)."""
    lookup = lookup if lookup is not None else tokenizer.item_lookup()
    constraint = TrieConstraint(trie, trie.candidate_counts(mask), num_beams, tokenizer.pad_id)
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        max_new_tokens=trie.max_len,
        do_sample=False,
        logits_processor=LogitsProcessorList([constraint]),
        return_dict_in_generate=True,
        output_scores=True,
        **({"length_penalty": 0.0} if num_beams > 1 else {}),
        pad_token_id=tokenizer.pad_id,
        eos_token_id=tokenizer.eos_id,
        decoder_start_token_id=tokenizer.pad_id,
    )
    b = input_ids.shape[0]
    seqs = out.sequences.view(b, num_beams, -1).cpu().numpy()
    if num_beams == 1:  # greedy search returns no sequence score: one sequence, nothing to order
        scores = np.zeros((b, 1))
        scores[seqs[:, 0, 1] == tokenizer.pad_id] = -np.inf
    else:
        scores = out.sequences_scores.view(b, num_beams).cpu().numpy()
    items = np.full((b, num_beams), -1, dtype=np.int64)
    item_scores = np.full((b, num_beams), -np.inf)
    for i in range(b):
        ranked: list[int] = []
        for j in np.argsort(-scores[i], kind="stable"):
            if not np.isfinite(scores[i, j]):
                continue
            item = lookup.get(_item_tokens(seqs[i, j], tokenizer))
            if item is not None and mask[i, item] and item not in ranked:
                item_scores[i, len(ranked)] = scores[i, j]
                ranked.append(item)
        items[i, : len(ranked)] = ranked
    return items, item_scores


def _item_tokens(seq: np.ndarray, tokenizer: P5Tokenizer) -> tuple[int, ...]:
    toks = []
    for tok in seq[1:].tolist():  # skip the decoder start token
        if tok in (tokenizer.eos_id, tokenizer.pad_id):
            break
        toks.append(tok)
    return tuple(toks)

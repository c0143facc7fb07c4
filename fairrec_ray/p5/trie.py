"""A trie over the token ids of every item id, used as a vectorised logits processor so beam
search can only produce ids of the current user's candidate items.

Each node knows which items lie below it (a sparse node x item matrix); for a batch, the number of
*candidate* items below every node is one sparse product, and a token is allowed at a node iff its
child has at least one candidate below it. Finished/invalid rows may only emit padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from transformers import LogitsProcessor


class ItemTrie:
    """Paths = item token ids followed by eos; ``child[node, token]`` = next node or -1."""

    def __init__(self, item_tokens: Sequence[Sequence[int]], eos_id: int, vocab_size: int):
        children: list[dict[int, int]] = [{}]
        rows, cols = [], []
        self.max_len = 0
        for item, toks in enumerate(item_tokens):
            node = 0
            path = [*toks, eos_id]
            self.max_len = max(self.max_len, len(path))
            for tok in path:
                rows.append(node)
                cols.append(item)
                nxt = children[node].get(tok)
                if nxt is None:
                    nxt = len(children)
                    children[node][tok] = nxt
                    children.append({})
                node = nxt
            rows.append(node)
            cols.append(item)
        self.n_nodes = len(children)
        self.child = torch.full((self.n_nodes, vocab_size), -1, dtype=torch.long)
        for node, kids in enumerate(children):
            for tok, nxt in kids.items():
                self.child[node, tok] = nxt
        data = np.ones(len(rows), dtype=np.float32)
        self.node_items = sp.csr_matrix((data, (rows, cols)), shape=(self.n_nodes, len(item_tokens)))
        self.node_items.sum_duplicates()
        self.node_items.data[:] = 1.0

    def candidate_counts(self, mask: np.ndarray) -> torch.Tensor:
        """``[B, n_nodes]``: candidate items below each node, for a ``[B, n_items]`` mask."""
        counts = self.node_items @ mask.T.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(counts.T))


class TrieConstraint(LogitsProcessor):
    """Masks every token that leaves the trie of the row's candidates (rows = batch x beams)."""

    def __init__(self, trie: ItemTrie, counts: torch.Tensor, num_beams: int, pad_id: int):
        self.trie, self.num_beams, self.pad_id = trie, num_beams, pad_id
        self.counts = counts

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        child = self.trie.child.to(scores.device)
        counts = self.counts.to(scores.device)
        node = torch.zeros(input_ids.shape[0], dtype=torch.long, device=scores.device)
        for t in range(1, input_ids.shape[1]):  # position 0 is the decoder start token
            node = torch.where(node >= 0, child[node.clamp(min=0), input_ids[:, t]], node)
        nxt = child[node.clamp(min=0)]  # [R, V]
        batch = torch.arange(input_ids.shape[0], device=scores.device) // self.num_beams
        ok = (nxt >= 0) & (counts[batch[:, None], nxt.clamp(min=0)] > 0) & (node >= 0)[:, None]
        dead = ~ok.any(dim=1)
        ok[dead, self.pad_id] = True  # off-trie rows only pad (their score is already -inf)
        return scores.masked_fill(~ok, float("-inf"))

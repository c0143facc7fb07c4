"""A small P5 backbone for CFP tests, pre-trained in-process in seconds (plain PyTorch; the real
``train_p5`` is tested by the P5 suite). Narrower than the ``tiny`` preset so CPU tests stay fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.data import load_cfp_split
from fairrec_ray.p5 import ExampleConfig, P5Collator, build_tokenizer, save_p5, train_examples
from fairrec_ray.p5.model import P5Model, preset_config

SMALL_DIMS = dict(d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, num_decoder_layers=2)


def train_small_backbone(config: CFPConfig, folder: Path, epochs: int = 6, seed: int = 0) -> Path:
    dataset, split = load_cfp_split(config)
    tok = build_tokenizer(dataset.n_users, dataset.n_items)
    torch.manual_seed(seed)
    model = P5Model(preset_config("tiny", tok.vocab_size, **SMALL_DIMS))
    model.set_word_starts(tok.word_start_flags())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    collate = P5Collator(tok)
    cfg = ExampleConfig(max_history=config.max_history, direct_per_user=0, max_seq_per_user=10)
    for epoch in range(epochs):
        examples = train_examples(split, tok, cfg, seed, epoch)
        order = np.random.default_rng(epoch).permutation(len(examples))
        for start in range(0, len(order), 64):
            b = collate([examples[i] for i in order[start : start + 64]])
            loss = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return save_p5(model, tok, folder)


def untrained_backbone(config: CFPConfig, folder: Path, seed: int = 0) -> Path:
    """A freshly initialised small P5 matching ``config``'s data (for plumbing tests)."""
    dataset, _ = load_cfp_split(config)
    tok = build_tokenizer(dataset.n_users, dataset.n_items)
    torch.manual_seed(seed)
    model = P5Model(preset_config("tiny", tok.vocab_size, **SMALL_DIMS))
    model.set_word_starts(tok.word_start_flags())
    return save_p5(model.eval(), tok, folder)

"""CFP's view of the data: the leave-one-out split, attribute labels, rank-sharded training batches
and one representation prompt per user.

Every worker rebuilds the same examples deterministically (seed, epoch) and takes an equal-sized
contiguous shard, so all ranks run the same number of steps (DDP and ``ray.train.report`` are
collective) — cheaper than shipping prompts through Ray Data for datasets of this size.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.data import LeaveOneOutSplit, RecDataset
from fairrec_ray.data.options import data_options
from fairrec_ray.p5.examples import ExampleConfig, P5Collator, eval_examples, train_examples
from fairrec_ray.p5.tokenizer import P5Tokenizer

# Users' representation prompt: template 2-1 over the test-time history (every user has one).
REPRESENTATION_STAGE = "test"


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch; ``rank`` offsets only what must differ per worker (dropout)."""
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def load_cfp_split(config: CFPConfig) -> tuple[RecDataset, LeaveOneOutSplit]:
    """Exactly the dataset and split the backbone is pre-trained on (same ``DataOptions``)."""
    dataset, split = data_options(config).load_split()
    dataset.require_attribute(config.attribute)
    return dataset, split


@dataclass
class CFPData:
    dataset: RecDataset
    split: LeaveOneOutSplit
    labels: np.ndarray  # attribute label of every user_idx
    n_classes: int
    tokenizer: P5Tokenizer
    max_history: int

    @classmethod
    def build(
        cls, config: CFPConfig, tokenizer: P5Tokenizer, loaded: tuple[RecDataset, LeaveOneOutSplit] | None = None
    ) -> CFPData:
        """``loaded``: the (dataset, split) already read by the driver (workers get it shipped)."""
        dataset, split = loaded or load_cfp_split(config)
        labels = dataset.attribute_labels(config.attribute)
        return cls(dataset, split, labels, len(dataset.attributes[config.attribute]), tokenizer, config.max_history)

    def collate(self, examples) -> dict[str, torch.Tensor]:
        batch = P5Collator(self.tokenizer)(examples)
        batch["attribute"] = torch.as_tensor(self.labels[batch["user_idx"].numpy()], dtype=torch.long)
        return batch

    def train_batches(
        self, epoch: int, seed: int, batch_size: int, rank: int = 0, world: int = 1, per_user: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's shard of one epoch of sequential prompts (shuffled identically on all ranks).

        ``per_user`` > 0 samples that many target positions per user and epoch (0 = all)."""
        cfg = ExampleConfig(max_history=self.max_history, direct_per_user=0, max_seq_per_user=per_user)
        examples = train_examples(self.split, self.tokenizer, cfg, seed, epoch)
        order = np.random.default_rng([seed, epoch, 7]).permutation(len(examples))
        share = len(examples) // world
        mine = order[rank * share : (rank + 1) * share]
        for start in range(0, share, batch_size):
            yield self.collate([examples[i] for i in mine[start : start + batch_size]])

    def user_batches(
        self, batch_size: int = 128, stage: str = REPRESENTATION_STAGE
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One representation prompt per split user (the ``stage``'s history), in split order."""
        examples = eval_examples(self.split, self.tokenizer, stage, self.max_history)
        for start in range(0, len(examples), batch_size):
            yield self.collate(examples[start : start + batch_size])

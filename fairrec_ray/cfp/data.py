"""CFP's view of the data: the leave-one-out split, attribute labels, rank-sharded training batches
and one representation prompt per user.

Protocol (``heldout_share``/``valid_share`` > 0): the split's users are partitioned once
(``protocol_partition``: stratified jointly by every attribute of the dataset, seeded, so every
attribute's job on a dataset holds out the same users) into *train* users, the only ones in
training batches; *valid* users, on whom the best epoch is chosen; and *held-out* users, on whom
every reported number is measured. ``for_training`` is what the training loop holds: the held-out
users are not in its split and their labels are ``HIDDEN`` (a label cross-entropy rejects).

Every worker rebuilds the same examples deterministically (seed, epoch) and takes an equal-sized
contiguous shard, so all ranks run the same number of steps (DDP and ``ray.train.report`` are
collective) — cheaper than shipping prompts through Ray Data for datasets of this size.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.data import LeaveOneOutSplit, RecDataset
from fairrec_ray.data.options import data_options
from fairrec_ray.data.splits import UserPartition, partition_split_users, subset_split
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5.examples import ExampleConfig, P5Collator, eval_examples, train_examples
from fairrec_ray.p5.tokenizer import P5Tokenizer

# Users' representation prompt: template 2-1 over the test-time history (every user has one).
REPRESENTATION_STAGE = "test"
HIDDEN = -1  # the label a held-out user has where training runs
Part = Literal["train", "valid", "heldout"]


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


def protocol_partition(dataset: RecDataset, split: LeaveOneOutSplit, config: CFPConfig) -> UserPartition | None:
    """The split's users in train / valid / held-out parts (rows of ``split``); None when both
    shares are 0 (every user everywhere: not the protocol, kept for comparison with old runs)."""
    if config.heldout_share == 0 and config.valid_share == 0:
        return None
    return partition_split_users(dataset, split, config.valid_share, config.heldout_share, config.seed)


@dataclass
class CFPData:
    dataset: RecDataset
    split: LeaveOneOutSplit
    labels: np.ndarray  # attribute label of every user_idx (HIDDEN: not visible here)
    n_classes: int
    tokenizer: P5Tokenizer
    max_history: int
    partition: UserPartition | None = None  # rows of ``split``; None: every user is in every part

    @classmethod
    def build(
        cls, config: CFPConfig, tokenizer: P5Tokenizer, loaded: tuple[RecDataset, LeaveOneOutSplit] | None = None
    ) -> CFPData:
        """``loaded``: the (dataset, split) already read by the driver (workers get it shipped)."""
        dataset, split = loaded or load_cfp_split(config)
        labels = dataset.attribute_labels(config.attribute)
        n_classes = len(dataset.attributes[config.attribute])
        partition = protocol_partition(dataset, split, config)
        return cls(dataset, split, labels, n_classes, tokenizer, config.max_history, partition)

    def users(self, part: Part) -> CFPData:
        """The data restricted to one part's users (all users without a partition)."""
        if self.partition is None:
            return self
        rows = getattr(self.partition, part)
        if not len(rows):
            raise ConfigError(f"{part}_share: the {part} part of the users is empty; expected > 0 users there")
        return replace(self, split=subset_split(self.split, rows), partition=None)

    def for_training(self) -> CFPData:
        """What the training loop holds: train and valid users only; held-out labels ``HIDDEN``."""
        if self.partition is None:
            return self
        keep = np.sort(np.concatenate([self.partition.train, self.partition.valid]))
        labels = self.labels.copy()
        labels[self.split.users[self.partition.heldout]] = HIDDEN
        none = np.zeros(0, np.int64)
        part = UserPartition(
            np.searchsorted(keep, self.partition.train), np.searchsorted(keep, self.partition.valid), none
        )
        return replace(self, split=subset_split(self.split, keep), labels=labels, partition=part)

    def training_split(self) -> LeaveOneOutSplit:
        """The users whose sequences train the prompts and whose labels train the discriminator."""
        return self.split if self.partition is None else subset_split(self.split, self.partition.train)

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
        examples = train_examples(self.training_split(), self.tokenizer, cfg, seed, epoch)
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

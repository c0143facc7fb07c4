"""``P5TrainConfig``: every knob of P5 pre-training (the CLI's flags are generated from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fairrec_ray.data.options import DataOptions
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5.examples import ExampleConfig, check_mix
from fairrec_ray.p5.indexing import INDEXINGS, USER_INDEXINGS
from fairrec_ray.p5.model import PRESETS


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class P5TrainConfig(DataOptions):
    output: str = field(default="runs/p5", metadata=_help("output folder (re-run with the same one to resume)"))
    preset: str = field(default="tiny", metadata=_help(f"model size: {', '.join(PRESETS)}"))
    model: str | None = field(default=None, metadata=_help("initialise from a local HF T5/P5 checkpoint folder"))
    epochs: int = field(default=10, metadata=_help("training epochs"))
    batch_size: int = field(default=32, metadata=_help("per-worker batch size"))
    lr: float = field(default=1e-3, metadata=_help("AdamW learning rate (paper: 1e-3)"))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay (paper: 0.01)"))
    warmup_ratio: float = field(default=0.1, metadata=_help("share of steps of linear warm-up (paper: 0.1)"))
    grad_clip: float = field(default=1.0, metadata=_help("gradient-norm clip (paper: 1.0)"))
    max_history: int = field(default=20, metadata=_help("items of history in a prompt (paper: 20)"))
    n_candidates: int = field(default=10, metadata=_help("candidates listed by 2-7/2-8/5-5..5-8 (paper: 100)"))
    direct_per_user: int = field(default=2, metadata=_help("direct-task (5-x) prompts per user and epoch"))
    max_seq_per_user: int = field(default=0, metadata=_help("sequential prompts per user and epoch (0 = all)"))
    item_indexing: Literal["raw", "sequential", "collaborative"] = field(
        default="collaborative",
        metadata=_help("item ids: collaborative (co-consumption clusters; beats MostPop), sequential (P5), raw"),
    )
    user_indexing: Literal["raw", "collaborative", "independent"] = field(
        default="raw",
        metadata=_help(
            "user ids: raw (user_idx+1 in digit pieces, P5), collaborative (clusters of similar users) or "
            "independent (one whole <user_N> token per user)"
        ),
    )
    prompts_per_user: int = field(
        default=0,
        metadata=_help(
            "family mix (UP5): prompts per user and epoch split by the --mix-* weights "
            "(0 = every sequential position + --direct-per-user)"
        ),
    )
    # Default weights: UP5-like proportions (sequential, the two user-only families, half as much
    # choice); not yet chosen by a measurement (the ML-100K comparison is open, see issue #11).
    mix_sequential: float = field(default=1.0, metadata=_help("mix weight: sequential 2-1..2-6"))
    mix_history: float = field(default=1.0, metadata=_help("mix weight: user-only history 2-14/2-17/2-18"))
    mix_yes_no: float = field(default=1.0, metadata=_help("mix weight: user-only yes/no 5-1..5-4"))
    mix_choice: float = field(default=0.5, metadata=_help("mix weight: candidate choice 5-5..5-8"))
    history_items: int = field(default=5, metadata=_help("items in a history-family target"))
    length_bucketing: bool = field(
        default=True, metadata=_help("batch prompts of similar token length together (less padding)")
    )
    num_workers: int = field(default=1, metadata=_help("Ray Train workers (0 = in-process, no workers)"))
    use_gpu: bool = field(default=False, metadata=_help("one GPU per worker"))
    torch_threads: int = field(
        default=1, metadata=_help("torch threads per worker (0 = cores / workers); 1 is fastest on a busy CPU")
    )
    val_protocol: Literal["full", "sampled-100"] = field(default="full", metadata=_help("validation protocol"))
    val_users: int = field(default=0, metadata=_help("validate on this many users (0 = all)"))
    eval_batch_size: int = field(default=32, metadata=_help("users per beam-search batch"))
    num_beams: int = field(default=20, metadata=_help("beams (paper: 20)"))
    address: str | None = field(default=None, metadata=_help("Ray address (default: RAY_ADDRESS or local)"))
    crash_after_epoch: int = field(default=0, metadata=_help("testing: fail right after this epoch's checkpoint"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: got {self.preset!r}; expected one of {list(PRESETS)}")
        positive = ("epochs", "batch_size", "max_history", "n_candidates", "eval_batch_size", "num_beams")
        positive += ("history_items",)
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: got {getattr(self, name)}; must be >= 1")
        nonneg = ("num_workers", "torch_threads", "val_users", "direct_per_user", "max_seq_per_user")
        nonneg += ("crash_after_epoch", "prompts_per_user")
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: got {getattr(self, name)}; must be >= 0")
        if not self.lr > 0:
            raise ConfigError(f"lr: got {self.lr}; must be > 0")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            raise ConfigError(f"weight_decay/grad_clip: got {self.weight_decay}/{self.grad_clip}; need >= 0 / > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: got {self.warmup_ratio}; must be in [0, 1)")
        if self.eval_batch_size < 2:
            raise ConfigError(f"eval_batch_size: got {self.eval_batch_size}; evaluation is batched, use >= 2")
        if self.use_gpu and self.num_workers == 0:
            raise ConfigError("use_gpu: needs num_workers >= 1 (GPUs are assigned to Ray Train workers)")
        if self.item_indexing not in INDEXINGS:
            raise ConfigError(f"item_indexing: got {self.item_indexing!r}; expected one of {list(INDEXINGS)}")
        if self.user_indexing not in USER_INDEXINGS:
            raise ConfigError(f"user_indexing: got {self.user_indexing!r}; expected one of {list(USER_INDEXINGS)}")
        check_mix(self.mix)

    @property
    def mix(self) -> tuple[float, float, float, float]:
        """The family weights in ``examples.FAMILIES`` order."""
        return (self.mix_sequential, self.mix_history, self.mix_yes_no, self.mix_choice)

    def example_config(self) -> ExampleConfig:
        return ExampleConfig(
            max_history=self.max_history, n_candidates=self.n_candidates,
            direct_per_user=self.direct_per_user, max_seq_per_user=self.max_seq_per_user,
            prompts_per_user=self.prompts_per_user, mix=self.mix, history_items=self.history_items,
        )  # fmt: skip

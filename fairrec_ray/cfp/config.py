"""CFPConfig: every knob of ``python -m fairrec_ray.train_cfp`` (YAML keys = field names).

Defaults are the embedded demo: synthetic data (300 users, 100 items, ~20 interactions each) with
the generator's attribute -> taste signal raised to 3 (at the generator's default of 1 the tiny
backbone's user representation leaked only ~0.6-0.67 gender AUC; at 3 it leaks ~0.78-0.84), the
tiny P5 preset pre-trained for 4 epochs on the same data and cached, 2 Ray Train workers on CPU,
4 CFP epochs (1 discriminator warm-up) at prefix lr 1e-2, λ = 10 with the paper's ``negative``
adversarial term (measured better than ``uniform`` here, see ``discriminator.adversary_loss``);
its run time is in the README's Quick start. Paper-scale settings (ML-1M, prefix 10,
20 epochs, λ = 100 for age / 10 for occupation, lr 1e-4) are set through YAML or ``key=value``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fairrec_ray.data.options import DataOptions
from fairrec_ray.errors import ConfigError

ATTRIBUTE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class PromptConfig:
    """Prefix prompt hyper-parameters shared by the encoder and decoder sides."""

    prefix_length: int = 10
    ffn_hidden: int = 128
    reweighter: bool = True
    reweighter_dim: int = 64


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class CFPConfig(DataOptions):
    # --- data (DataOptions; the demo's own defaults below)
    attribute: str = field(default="gender", metadata=_help("sensitive attribute: gender|age|occupation|marital|…"))
    synthetic_users: int = field(default=300, metadata=_help("synthetic: users"))
    synthetic_items: int = field(default=100, metadata=_help("synthetic: items"))
    synthetic_interactions: float = field(default=20.0, metadata=_help("synthetic: mean interactions per user"))
    synthetic_signal: float = field(
        default=3.0, metadata=_help("synthetic: planted attribute -> taste signal (generator default 1; 0: none)")
    )
    max_history: int = field(default=20, metadata=_help("history items in a prompt (most recent)"))
    samples_per_user: int = field(default=4, metadata=_help("training prompts per user and epoch (0: every position)"))
    # --- backbone
    backbone: str | None = field(default=None, metadata=_help("P5 backbone folder; absent: pre-train a tiny one"))
    backbone_cache: str | None = field(
        default=None, metadata=_help("where an auto-trained backbone is cached (default: $FAIRREC_CACHE/backbones)")
    )
    backbone_preset: Literal["tiny", "small"] = field(default="tiny", metadata=_help("preset when pre-training"))
    backbone_epochs: int = field(default=4, metadata=_help("epochs when pre-training the backbone"))
    backbone_seq_per_user: int = field(default=8, metadata=_help("pre-training prompts per user and epoch (0: all)"))
    # The demo keeps P5's raw ids: measured on its 100-item catalogue, collaborative ids made the
    # backbone leak 0.97 (raw: 0.78) and 3 adversarial epochs then only reached 0.65 (raw: 0.49).
    backbone_indexing: Literal["raw", "sequential", "collaborative"] = field(
        default="raw", metadata=_help("item ids when pre-training a backbone (see p5/indexing.py)")
    )
    backbone_user_indexing: Literal["raw", "collaborative", "independent"] = field(
        default="raw", metadata=_help("user ids when pre-training a backbone (see p5/indexing.py)")
    )
    backbone_prompts_per_user: int = field(
        default=0,
        metadata=_help("pre-training prompts per user and epoch over UP5's task families (0: P5's own mix)"),
    )
    # --- prompts
    prefix_length: int = field(default=10, metadata=_help("prefix tokens per side (encoder and decoder)"))
    ffn_hidden: int = field(default=128, metadata=_help("hidden width of the reparameterisation FFN"))
    reweighter: bool = field(default=True, metadata=_help("Prompt Token Reweighter on (false: ablation)"))
    # --- adversary
    discriminator_weight: float = field(default=10.0, metadata=_help("λ: adversarial weight (0: no adversary)"))
    adversary_loss: Literal["negative", "uniform"] = field(
        default="negative",
        metadata=_help("prompt's adversarial term: negative = −L_disc (paper), uniform = CE to uniform classes"),
    )
    discriminator_hidden: int = field(default=128, metadata=_help("discriminator MLP width"))
    discriminator_layers: int = field(default=2, metadata=_help("discriminator hidden layers"))
    disc_warmup_epochs: int = field(default=1, metadata=_help("discriminator-only epochs before the prompts train"))
    rec_steps: int = field(default=1, metadata=_help("prompt-only steps per cycle"))
    together_steps: int = field(default=0, metadata=_help("prompt-then-discriminator steps per cycle"))
    disc_steps: int = field(default=1, metadata=_help("discriminator-only steps per cycle"))
    # --- optimisation
    epochs: int = field(default=4, metadata=_help("training epochs, warm-up included"))
    batch_size: int = field(default=64, metadata=_help("per-worker batch size"))
    prefix_lr: float = field(default=1e-2, metadata=_help("prompt learning rate (AdamW)"))
    discriminator_lr: float = field(default=1e-3, metadata=_help("discriminator learning rate (AdamW)"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay of both optimisers"))
    grad_clip: float = field(default=1.0, metadata=_help("gradient-norm clip of the prompt update"))
    # --- evaluation
    protocol: Literal["sampled-100", "full"] = field(default="sampled-100", metadata=_help("ranking protocol"))
    eval_users: int | None = field(default=None, metadata=_help("cap on users in hit@k evaluation (None: all)"))
    num_beams: int = field(default=20, metadata=_help("beams for ranking evaluation"))
    probe_folds: int = field(default=5, metadata=_help("probe: stratified folds over users (1: one split)"))
    hit_bound: float = field(default=0.95, metadata=_help("best epoch: hit@10 >= bound × backbone's, then min AUC"))
    # --- protocol (cfp/protocol.py): who trains, who selects the epoch, who is reported
    heldout_share: float = field(
        default=0.2, metadata=_help("users (stratified by attribute) never trained on; every test number is theirs")
    )
    valid_share: float = field(
        default=0.2, metadata=_help("users (stratified) never trained on; the best epoch is chosen on them")
    )
    control: bool = field(default=True, metadata=_help("also train the λ = 0 control (rec loss only) for the table"))
    eval_every_epoch: bool = field(default=True, metadata=_help("probe + validation hit@k after every epoch"))
    # --- Ray
    num_workers: int = field(default=2, metadata=_help("Ray Train workers (0: run the loop in the driver)"))
    use_gpu: bool = field(default=False, metadata=_help("one GPU per worker"))
    cpus_per_worker: float = field(default=1.0, metadata=_help("CPUs reserved per worker"))
    address: str | None = field(default=None, metadata=_help("Ray address (default: $RAY_ADDRESS or a local Ray)"))
    storage_path: str | None = field(default=None, metadata=_help("Ray Train storage (default: OUTPUT/ray)"))
    max_failures: int = field(default=0, metadata=_help("worker-group restarts Ray Train may attempt"))
    # --- output
    output: str = field(default="cfp_output", metadata=_help("output folder (results.json, prompt/, logs)"))

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"{key}: got {getattr(self, key)!r}; expected {rule}")

        super().__post_init__()
        need(bool(ATTRIBUTE_RE.match(self.attribute)), "attribute", "a lower-case attribute name")
        need(self.discriminator_weight >= 0, "discriminator_weight", ">= 0")
        for key in ("prefix_length", "ffn_hidden", "discriminator_hidden", "epochs", "batch_size", "num_beams"):
            need(getattr(self, key) >= 1, key, ">= 1")
        for key in ("discriminator_layers", "disc_warmup_epochs", "rec_steps", "together_steps", "disc_steps"):
            need(getattr(self, key) >= 0, key, ">= 0")
        backbone_counts = ("backbone_epochs", "backbone_seq_per_user", "backbone_prompts_per_user")
        for key in ("max_failures", "num_workers", *backbone_counts):
            need(getattr(self, key) >= 0, key, ">= 0")
        need(self.max_history >= 1, "max_history", ">= 1")
        need(self.samples_per_user >= 0, "samples_per_user", ">= 0")
        need(self.rec_steps + self.together_steps >= 1, "rec_steps", ">= 1 (or together_steps >= 1)")
        need(self.disc_warmup_epochs < self.epochs, "disc_warmup_epochs", f"< epochs ({self.epochs})")
        for key in ("prefix_lr", "discriminator_lr", "cpus_per_worker"):
            need(getattr(self, key) > 0, key, "> 0")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(self.grad_clip > 0, "grad_clip", "> 0")
        need(0 < self.hit_bound <= 1, "hit_bound", "in (0, 1]")
        need(self.probe_folds >= 1, "probe_folds", ">= 1")
        need(0 <= self.heldout_share < 1, "heldout_share", "in [0, 1)")
        need(0 <= self.valid_share < 1, "valid_share", "in [0, 1)")
        need(self.valid_share + self.heldout_share < 1, "valid_share", f"< 1 - heldout_share ({self.heldout_share})")
        need(
            (self.valid_share > 0) == (self.heldout_share > 0),
            "valid_share",
            "> 0 with heldout_share > 0 (both 0: no protocol)",
        )
        need(self.eval_users is None or self.eval_users >= 1, "eval_users", ">= 1 or None")
        need(self.synthetic_users >= 20, "synthetic_users", ">= 20")
        need(self.adversary_loss in ("negative", "uniform"), "adversary_loss", "negative or uniform")

    def check_paths(self) -> None:
        """Filesystem checks, run once by the driver (not in ``__post_init__``: configs are rebuilt
        on every worker and trial, where paths may differ)."""
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ConfigError(f"data_dir: got {self.data_dir!r}; expected an existing folder")
        if self.backbone is not None and not (Path(self.backbone) / "config.json").is_file():
            raise ConfigError(f"backbone: got {self.backbone!r}; expected a P5 model folder (with config.json)")

    @property
    def prompt(self) -> PromptConfig:
        return PromptConfig(self.prefix_length, self.ffn_hidden, self.reweighter)

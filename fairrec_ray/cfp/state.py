"""A CFP run's state outside the loop: what the driver ships to the workers (``DriverInputs``),
how models are built for a config (``build_models``) and what a checkpoint holds
(``prompt_state``, ``load_state``). Shared by the driver (``job.py``) and the loop (``loop.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.data import CFPData, seed_everything
from fairrec_ray.cfp.discriminator import Discriminator
from fairrec_ray.cfp.model import CFPModel, build_cfp_model
from fairrec_ray.data import LeaveOneOutSplit, RecDataset

STATE_FILE = "cfp_state.pt"


def prompt_state(model: CFPModel) -> dict[str, torch.Tensor]:
    """Only what CFP trains (the backbone is saved once, elsewhere)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


@dataclass
class DriverInputs:
    """What the driver read from its own disk, for the workers (sent through Ray's object store):
    the backbone folder's files and the loaded dataset and split."""

    backbone_files: dict[str, bytes]  # path relative to the backbone folder -> content
    dataset: RecDataset
    split: LeaveOneOutSplit

    @classmethod
    def read(cls, backbone_dir: Path, loaded: tuple[RecDataset, LeaveOneOutSplit]) -> DriverInputs:
        files = sorted(p for p in Path(backbone_dir).rglob("*") if p.is_file())
        return cls({str(p.relative_to(backbone_dir)): p.read_bytes() for p in files}, *loaded)

    def write_backbone(self, folder: Path) -> Path:
        for name, content in self.backbone_files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        return folder


def build_models(
    config: CFPConfig,
    backbone_dir: str,
    state: dict[str, Any] | None = None,
    loaded: tuple[RecDataset, LeaveOneOutSplit] | None = None,
):
    """(CFP model, discriminator, data) for ``config``, restored from ``state`` when given;
    ``loaded``: the (dataset, split) when already in memory (else read as ``config`` says)."""
    from fairrec_ray.p5 import load_p5

    backbone, tokenizer = load_p5(backbone_dir)
    data = CFPData.build(config, tokenizer, loaded)
    seed_everything(config.seed)  # identical prompt/discriminator init on every rank
    model = build_cfp_model(backbone, config.prompt)
    disc = Discriminator(
        backbone.config.d_model, data.n_classes, config.discriminator_hidden, config.discriminator_layers
    )
    if state is not None:
        missing = model.load_state_dict(state["prompt"], strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"checkpoint holds unknown prompt keys {missing.unexpected_keys[:3]}")
        disc.load_state_dict(state["discriminator"])
    return model, disc, data


def load_state(folder: str | Path) -> dict[str, Any]:
    """A checkpoint folder's training state (prompt, discriminator, optimisers, metrics, ...)."""
    return torch.load(Path(folder) / STATE_FILE, weights_only=False)

"""A small serving bundle built in seconds: an untrained small P5 on synthetic data, two attribute
prompts with random (perturbed) weights so each visibly changes the ranking, and a Prompt Mixture
whose mixer is not the plain average — written by the same ``write_bundle`` the training jobs use."""

from __future__ import annotations

from pathlib import Path

import torch
from cfp_fixtures import untrained_backbone

from fairrec_ray.cfp.config import CFPConfig, PromptConfig
from fairrec_ray.cfp.data import load_cfp_split
from fairrec_ray.cfp.mixture import build_mixture_model
from fairrec_ray.cfp.model import build_cfp_model
from fairrec_ray.data.options import data_spec, write_data_spec
from fairrec_ray.p5 import load_p5
from fairrec_ray.serve.bundle import Catalogue, write_bundle

ATTRIBUTES = ("age", "gender")
CONFIG = dict(synthetic_users=40, synthetic_items=60, synthetic_interactions=8.0, seed=0)


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.5) -> None:
    """Random prompt weights: an untrained prompt is too close to no prompt to tell apart."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn_like(p))


def make_parts(root: Path) -> dict[str, Path]:
    """Backbone, two prompts and a mixture folder under ``root`` (not yet a bundle)."""
    config = CFPConfig(**CONFIG)
    backbone = untrained_backbone(config, root / "backbone")
    write_data_spec(config, backbone)
    parts = {"backbone": backbone}
    for i, attribute in enumerate(ATTRIBUTES):
        model, _ = load_p5(backbone)
        torch.manual_seed(10 + i)
        cfp = build_cfp_model(model, PromptConfig(prefix_length=3, ffn_hidden=16, reweighter_dim=8))
        perturb(cfp, 20 + i)
        parts[attribute] = cfp.save_prompt(root / "prompts" / attribute, {"attribute": attribute})
    mixture = build_mixture_model(load_p5(backbone)[0], {a: parts[a] for a in ATTRIBUTES})
    perturb(mixture, 30)
    parts["mixture"] = mixture.save_mixers(root / "mixture")
    return parts


def catalogue() -> Catalogue:
    config = CFPConfig(**CONFIG)
    dataset, _ = load_cfp_split(config)
    return Catalogue.from_dataset(dataset, data_spec(config))


def make_bundle(root: Path, with_mixture: bool = True) -> tuple[Path, dict[str, Path]]:
    parts = make_parts(root)
    bundle = write_bundle(
        root / "bundle",
        parts["backbone"],
        catalogue(),
        {a: parts[a] for a in ATTRIBUTES},
        parts["mixture"] if with_mixture else None,
    )
    return bundle, parts

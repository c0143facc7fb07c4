"""Training and evaluation of a Prompt Mixture (``cfp/mixture.py``) over saved attribute prompts.

Runs in one process (the mixers are two small attention layers; the per-attribute prompts they mix
are trained on Ray Train by ``train_cfp``). Each step draws a random non-empty subset S of the
attributes, mixes the prompts for S and takes ``L_rec + λ Σ_{a in S} adversary(D_a(rep), y_a)`` on
the mixers; every D_a with a in S then takes a step on the detached representation.
``disc_warmup_epochs`` train only the discriminators. Evaluation reports, for *every* subset, the
probe AUC of each attribute and hit@k, beside the backbone's.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.data import CFPData, seed_everything
from fairrec_ray.cfp.discriminator import Discriminator, adversary_loss, discriminator_loss
from fairrec_ray.cfp.evaluate import cfp_ranking, fairness_metrics
from fairrec_ray.cfp.mixture import MixtureModel, build_mixture_model
from fairrec_ray.cli import write_json_atomic
from fairrec_ray.config import config_to_dict
from fairrec_ray.console import Progress, attach_log_file, detach_log_file
from fairrec_ray.errors import ConfigError

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
LOG_FILE = "train_cfp_mixture.log"


def parse_prompts(pairs: Sequence[str]) -> dict[str, str]:
    prompts: dict[str, str] = {}
    for pair in pairs:
        attribute, sep, folder = pair.partition("=")
        if not sep or not attribute or not folder:
            raise ConfigError(f"--prompts: got {pair!r}; expected ATTRIBUTE=DIR")
        if attribute in prompts:
            raise ConfigError(f"--prompts: attribute {attribute!r} given twice")
        if not (Path(folder) / "encoder_prefix_config.json").is_file():
            raise ConfigError(f"--prompts: {folder} is not a CFP prompt folder (no encoder_prefix_config.json)")
        prompts[attribute] = folder
    if len(prompts) < 2:
        raise ConfigError(f"--prompts: a mixture needs >= 2 attribute prompts, got {len(prompts)}")
    return prompts


def all_subsets(attributes: list[str]) -> list[tuple[str, ...]]:
    return [c for r in range(1, len(attributes) + 1) for c in itertools.combinations(attributes, r)]


def train_mixture(config: CFPConfig, prompt_dirs: dict[str, str], output: str | Path) -> dict[str, Any]:
    """Train the mixers, evaluate every subset on the test split, write ``OUTPUT/results.json``
    and ``OUTPUT/mixture/`` (mixer weights + the prompt folders they mix). Returns the results."""
    handler = attach_log_file(Path(output) / LOG_FILE)
    try:
        return _train_mixture(config, prompt_dirs, Path(output))
    finally:
        detach_log_file(handler)


def _train_mixture(config: CFPConfig, prompt_dirs: dict[str, str], output: Path) -> dict[str, Any]:
    from fairrec_ray.p5 import load_p5

    if config.backbone is None:
        raise ConfigError("backbone: the Prompt Mixture needs --backbone (the one its prompts were trained on)")
    started = time.perf_counter()
    seed_everything(config.seed)
    backbone, tokenizer = load_p5(config.backbone)
    model = build_mixture_model(backbone, prompt_dirs)
    attributes = model.attributes
    data = {a: CFPData.build(dataclasses.replace(config, attribute=a), tokenizer) for a in attributes}
    base = data[attributes[0]]
    dim = backbone.config.d_model
    discs = {
        a: Discriminator(dim, data[a].n_classes, config.discriminator_hidden, config.discriminator_layers)
        for a in attributes
    }
    opt_mix = torch.optim.AdamW(model.prompt_parameters(), lr=config.prefix_lr, weight_decay=config.weight_decay)
    opt_disc = {a: torch.optim.AdamW(d.parameters(), lr=config.discriminator_lr) for a, d in discs.items()}
    subsets = all_subsets(attributes)
    rng = np.random.default_rng(config.seed)
    history = []
    progress = Progress("prompt mixture", total=config.epochs)
    for epoch in range(config.epochs):
        sums, steps = {"rec_loss": 0.0, "disc_loss": 0.0}, 0
        batches = base.train_batches(epoch, config.seed, config.batch_size, 0, 1, config.samples_per_user)
        for batch in batches:
            users = batch["user_idx"].numpy()
            labels = {a: torch.as_tensor(data[a].labels[users], dtype=torch.long) for a in attributes}
            subset = subsets[rng.integers(len(subsets))]
            model.set_subset(subset)
            inputs = (batch["input_ids"], batch["attention_mask"])
            if epoch >= config.disc_warmup_epochs:
                model.train()
                for d in discs.values():
                    d.eval()
                rec_loss, rep = model(*inputs, batch["labels"], batch["user_token_mask"])
                loss = rec_loss
                for a in subset:
                    loss = loss + config.discriminator_weight * adversary_loss(
                        discs[a](rep), labels[a], config.adversary_loss
                    )
                opt_mix.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.prompt_parameters(), config.grad_clip)
                opt_mix.step()
                sums["rec_loss"] += float(rec_loss.detach())
                rep = rep.detach()
            else:
                model.eval()
                with torch.no_grad():
                    rep = model.encode_users(*inputs, batch["user_token_mask"])
            for a in subset:
                discs[a].train()
                d_loss = discriminator_loss(discs[a](rep), labels[a])
                opt_disc[a].zero_grad(set_to_none=True)
                d_loss.backward()
                opt_disc[a].step()
                sums["disc_loss"] += float(d_loss.detach()) / len(subset)
            steps += 1
        record = {"epoch": epoch, **{k: v / max(1, steps) for k, v in sums.items()}}
        history.append(record)
        progress.update(epoch + 1, **{k: v for k, v in record.items() if k != "epoch"})

    results: dict[str, Any] = {
        "config": config_to_dict(config),
        "prompts": {a: str(Path(d).resolve()) for a, d in prompt_dirs.items()},
        "history": history,
        "backbone": evaluate_backbone(model, data, config),
        "subsets": evaluate_subsets(model, data, config, subsets),
    }
    model.save_mixers(output / "mixture")
    write_json_atomic(output / "mixture" / "mixture.json", {"attributes": attributes, "prompts": results["prompts"]})
    from fairrec_ray.serve.bundle import write_job_bundle  # OUTPUT/bundle: what the server loads

    results["bundle_dir"] = str(
        write_job_bundle(output, config.backbone, base.dataset, config, dict(prompt_dirs), output / "mixture")
    )
    results["seconds"] = time.perf_counter() - started
    write_json_atomic(output / RESULTS_FILE, results)
    return results


def _ranking(model: MixtureModel, data: dict[str, CFPData], config: CFPConfig, prompt: bool = True) -> dict[str, float]:
    """Ranking metrics + outcome fairness per attribute (keys ``attr/...``) on the held-out users'
    test split (labels are indexed by user, so each attribute's full label array serves as a group)."""
    heldout = next(iter(data.values())).users("heldout")
    return cfp_ranking(
        model, heldout, stage="test", protocol=config.protocol, num_beams=config.num_beams, max_users=None,
        seed=config.seed, prompt=prompt, groups={a: d.labels for a, d in data.items()},
    )  # fmt: skip


def evaluate_backbone(model: MixtureModel, data: dict[str, CFPData], config: CFPConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"ranking": _ranking(model, data, config, prompt=False)}
    for a, d in data.items():
        out[a] = fairness_metrics(model, d.users("heldout"), config.probe_folds, config.seed, prompt=False)["probe_auc"]
    return out


def evaluate_subsets(
    model: MixtureModel, data: dict[str, CFPData], config: CFPConfig, subsets: list[tuple[str, ...]]
) -> dict[str, Any]:
    """Per subset: probe AUC of each of its attributes and hit@k, all on the held-out users' test
    split (the same users for every attribute: the partition is joint over all attributes)."""
    out = {}
    for subset in subsets:
        model.set_subset(subset)
        entry: dict[str, Any] = {"ranking": _ranking(model, data, config)}
        entry["probe_auc"] = {
            a: fairness_metrics(model, data[a].users("heldout"), config.probe_folds, config.seed)["probe_auc"]
            for a in subset
        }
        out["+".join(subset)] = entry
        log.info("mixture subset %s: %s", "+".join(subset), entry)
    return out

"""The backbone CFP trains against: the user's ``--backbone`` folder, or a tiny P5 pre-trained on
the same dataset with ``fairrec_ray.p5.train.train_p5`` and cached under a key of everything that
shapes it (so the default run pre-trains once, later runs reuse it; an interrupted pre-training
resumes, since ``train_p5`` resumes from its own output)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.data.cache import default_cache_dir
from fairrec_ray.data.options import data_options

log = logging.getLogger(__name__)


def p5_train_config(config: CFPConfig, output: Path):
    """The P5 pre-training config matching CFP's data (same dataset, split, seed)."""
    from fairrec_ray.p5.config import P5TrainConfig

    return P5TrainConfig(
        **dataclasses.asdict(data_options(config)),
        output=str(output),
        preset=config.backbone_preset,
        epochs=config.backbone_epochs,
        max_history=config.max_history,
        max_seq_per_user=config.backbone_seq_per_user,
        item_indexing=config.backbone_indexing,
        user_indexing=config.backbone_user_indexing,
        prompts_per_user=config.backbone_prompts_per_user,
        num_workers=0,  # in-process: no worker start-up for a minute-long job
        val_users=config.eval_users or 0,
        val_protocol=config.protocol,
        num_beams=config.num_beams,
        address=config.address,
    )


def backbone_cache_dir() -> Path:
    """``backbones/`` inside the data cache root (``$FAIRREC_CACHE`` or ``~/.cache/fairrec_ray``)."""
    return default_cache_dir() / "backbones"


def ensure_backbone(config: CFPConfig) -> Path:
    """Folder of the backbone to use (pre-training and caching one when none is given)."""
    if config.backbone is not None:
        return Path(config.backbone).resolve()
    from dataclasses import asdict

    from fairrec_ray.p5.train import train_p5

    cache = Path(config.backbone_cache) if config.backbone_cache else backbone_cache_dir()
    probe = p5_train_config(config, Path("."))
    key_fields = {k: v for k, v in asdict(probe).items() if k not in ("output", "address")}
    if config.data_dir:
        key_fields["data_dir"] = str(Path(config.data_dir).resolve())
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
    output = (cache / f"{config.dataset}-{config.backbone_preset}-{key}").resolve()
    model_dir = output / "model"
    if (model_dir / "config.json").is_file():
        log.info("cfp: cached backbone %s", model_dir)
        return model_dir
    log.info("cfp: no --backbone; pre-training a %s P5 into %s", config.backbone_preset, output)
    return Path(train_p5(p5_train_config(config, output)))

"""``python -m fairrec_ray.train_cfp [--config FILE.yaml] [--flag value …] [key=value …]``

Trains counterfactually-fair prefix prompts (CFP) for a frozen P5 on Ray Train and writes
``OUTPUT/results.json`` (config, per-epoch metrics, backbone vs CFP), ``OUTPUT/prompt/`` (encoder
and decoder prefixes; ``fairrec_ray.cfp.load_fair_model``) and ``OUTPUT/train_cfp.log``.
With no arguments: synthetic data with a planted gender signal, tiny backbone (pre-trained and
cached on first use), local Ray. On a cluster: ``ray job submit --working-dir . -- python -m
fairrec_ray.train_cfp …`` (``RAY_ADDRESS`` is set by the job; ``--address`` overrides).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fairrec_ray.cli import ArgumentParser, run_main


def build_parser() -> ArgumentParser:
    from fairrec_ray.cfp.config import CFPConfig
    from fairrec_ray.config import add_config_arguments

    parser = ArgumentParser(
        prog="python -m fairrec_ray.train_cfp",
        description="Counterfactually-fair prefix prompts (UP5 CFP) for a frozen P5 backbone, on Ray Train.",
    )
    add_config_arguments(parser, CFPConfig)
    return parser


def main(argv: Sequence[str]) -> int:
    from fairrec_ray.cfp.config import CFPConfig
    from fairrec_ray.config import resolve_config

    config = resolve_config(CFPConfig, build_parser().parse_args(argv))
    config.check_paths()
    # Fail on a bad dataset/attribute before any output or Ray start (one line, exit 2).
    from fairrec_ray.cfp.data import load_cfp_split

    load_cfp_split(config)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from fairrec_ray.cfp.job import run_cfp

    run_cfp(config)
    return 0


if __name__ == "__main__":
    run_main(main)

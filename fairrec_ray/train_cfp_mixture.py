"""``python -m fairrec_ray.train_cfp_mixture --backbone DIR --prompts gender=DIR age=DIR [key=value …]``

Prompt Mixture (UP5): combines per-attribute CFP prompts (each trained by ``train_cfp`` on the same
backbone) with learned attention mixers, trained against one discriminator per attribute, so that
any subset of the attributes can be asked for at inference. Writes ``OUTPUT/results.json`` (probe
AUC per attribute and hit@k for every subset, beside the backbone's) and ``OUTPUT/mixture/``.
Data and training options are ``train_cfp``'s (``--dataset``, ``--epochs``, ``--prefix-lr`` = the
mixers' learning rate, ``--discriminator-weight``, …); runs in one process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fairrec_ray.cli import ArgumentParser, run_main


def build_parser() -> ArgumentParser:
    from fairrec_ray.cfp.config import CFPConfig
    from fairrec_ray.config import add_config_arguments

    parser = ArgumentParser(
        prog="python -m fairrec_ray.train_cfp_mixture",
        description="Prompt Mixture over per-attribute CFP prompts (any subset of attributes at inference).",
    )
    parser.add_argument(
        "--prompts", nargs="+", required=True, metavar="ATTRIBUTE=DIR", help="saved CFP prompt folders (2 or more)"
    )
    add_config_arguments(parser, CFPConfig)
    return parser


def main(argv: Sequence[str]) -> int:
    from fairrec_ray.cfp.config import CFPConfig
    from fairrec_ray.cfp.mixture_job import parse_prompts
    from fairrec_ray.config import resolve_config
    from fairrec_ray.errors import ConfigError

    args = build_parser().parse_args(argv)
    prompts = parse_prompts(args.prompts)
    config = resolve_config(CFPConfig, args)
    config.check_paths()
    if config.backbone is None:
        raise ConfigError("backbone: give --backbone DIR (the backbone the attribute prompts were trained on)")
    from fairrec_ray.cfp.data import load_cfp_split

    dataset, _ = load_cfp_split(config)
    for attribute in prompts:
        dataset.attribute_labels(attribute)  # unknown attribute: one clear line before any work
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from fairrec_ray.cfp.mixture_job import train_mixture

    results = train_mixture(config, prompts, config.output)
    for subset, entry in results["subsets"].items():
        aucs = " ".join(f"{a} {auc:.3f}" for a, auc in entry["probe_auc"].items())
        print(f"{subset:<24} probe AUC: {aucs}   hit@10 {entry['ranking']['hit@10']:.3f}")
    return 0


if __name__ == "__main__":
    run_main(main)

"""``python -m fairrec_ray.data describe --dataset NAME [--data-dir DIR] [--seed N]``.

Prints one JSON object (the contract other tools parse): sizes, per-attribute class counts, split
sizes, and the popular item group's size and share of training interactions. Where no user has enough
positives for the FCPO split (ownership data such as insurance), ``splits.fcpo`` is
``{"applicable": false, "reason": ..., "positive_threshold": ..., "max_positives_per_user": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fairrec_ray.cli import ArgumentParser, run_main


def main(argv: Sequence[str]) -> int:
    from fairrec_ray.data.describe import describe
    from fairrec_ray.data.registry import DATASETS, load_dataset

    parser = ArgumentParser(prog="python -m fairrec_ray.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    desc = sub.add_parser("describe", help="print dataset statistics as JSON")
    desc.add_argument("--dataset", required=True, choices=list(DATASETS))
    desc.add_argument("--data-dir", help="folder with the dataset's original files")
    desc.add_argument("--seed", type=int, default=0)
    desc.add_argument("--cache-dir", help="parsed-dataset cache (default $FAIRREC_CACHE or ~/.cache/fairrec_ray)")
    desc.add_argument("--popular-share", type=float, default=0.2)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.dataset, args.data_dir, seed=args.seed, cache_dir=args.cache_dir)
    print(json.dumps(describe(dataset, args.popular_share)))
    return 0


if __name__ == "__main__":
    run_main(main)

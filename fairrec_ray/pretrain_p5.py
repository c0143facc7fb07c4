"""``python -m fairrec_ray.pretrain_p5``: P5 pre-training on Ray Train (see ``fairrec_ray/p5/train.py``).

Example: ``python -m fairrec_ray.pretrain_p5 --dataset movielens-100k --data-dir data/ml-100k
--preset tiny --num-workers 2 --epochs 10 --output runs/p5``. Re-run with the same ``--output`` to
resume from the latest checkpoint; the best validation hit@10 model lands in ``OUTPUT/model``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fairrec_ray.cli import ArgumentParser, run_main
from fairrec_ray.config import add_config_arguments, resolve_config
from fairrec_ray.p5.config import P5TrainConfig
from fairrec_ray.p5.train import train_p5

__all__ = ["P5TrainConfig", "main", "train_p5"]


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="python -m fairrec_ray.pretrain_p5", description=__doc__.splitlines()[0])
    add_config_arguments(parser, P5TrainConfig)
    cfg = resolve_config(P5TrainConfig, parser.parse_args(argv))
    model_dir = train_p5(cfg)
    print(json.dumps({"model_dir": str(model_dir)}))
    return 0


if __name__ == "__main__":
    run_main(main)

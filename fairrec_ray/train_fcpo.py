"""``python -m fairrec_ray.train_fcpo``: train FCPO (CPO on RLlib) on a dataset at a fairness level.

Example::

    python -m fairrec_ray.train_fcpo --dataset movielens-100k --data-dir data/ml-100k \\
        --alpha 0.25 --iterations 50 --num-env-runners 2 --output runs/fcpo-a0.25

Every knob of the job (``fairrec_ray.fcpo.job.FCPOJobConfig``: data, split, CPO settings) is a
``--flag``, a ``key=value`` and a ``--config`` YAML key. Logs one progress line per iteration,
evaluates every ``--eval-every`` iterations and writes ``OUTPUT/results.json`` (atomically) and a
final RLlib checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

from fairrec_ray.cli import ArgumentParser, run_main


def main(argv: Sequence[str]) -> int:
    # imported here, so an untested Ray is reported by run_main as one line (fairrec_ray.deps)
    from fairrec_ray.config import add_config_arguments, resolve_config
    from fairrec_ray.fcpo.job import FCPOJobConfig, run_fcpo

    parser = ArgumentParser(prog="python -m fairrec_ray.train_fcpo", description=__doc__.split("\n")[0])
    add_config_arguments(parser, FCPOJobConfig)
    run_fcpo(resolve_config(FCPOJobConfig, parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    run_main(main)

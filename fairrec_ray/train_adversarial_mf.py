"""``python -m fairrec_ray.train_adversarial_mf``: plain vs adversarially filtered BPR-MF on CFP's
split and protocol (probe AUC, hit@k, outcome fairness), written to ``OUTPUT/results.json``.

Example: ``python -m fairrec_ray.train_adversarial_mf --dataset movielens-100k --data-dir DIR --attribute gender
--output runs/advmf-gender``.
"""

from __future__ import annotations

from collections.abc import Sequence

from fairrec_ray.cli import ArgumentParser, run_main


def main(argv: Sequence[str]) -> int:
    from fairrec_ray.baselines.adversarial_mf_job import AdvMFJobConfig, format_table, run_adversarial_mf
    from fairrec_ray.config import add_config_arguments, build_config, given_values

    parser = ArgumentParser(prog="python -m fairrec_ray.train_adversarial_mf", description=__doc__.splitlines()[0])
    add_config_arguments(parser, AdvMFJobConfig)
    values, source = given_values(AdvMFJobConfig, parser.parse_args(argv))
    cfg = build_config(AdvMFJobConfig, values, source)
    results = run_adversarial_mf(cfg)
    print(format_table(results), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)

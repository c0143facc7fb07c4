"""``python -m fairrec_ray.evaluate``: rank the held-out items with a P5 model folder (trie-constrained
beam search) or a baseline, and print the metrics as JSON.

Example: ``python -m fairrec_ray.evaluate --model runs/p5/model --protocol full --num-workers 2``.
A model folder is evaluated on the data it records (``data_spec.json``); ``--data-dir`` says where
those files are now. With ``--num-workers N`` the users are split over N Ray tasks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fairrec_ray.cli import ArgumentParser, run_main, write_json_atomic


def main(argv: Sequence[str]) -> int:
    from fairrec_ray.config import add_config_arguments, build_config, given_values
    from fairrec_ray.p5.evaluate import EvaluateConfig, run_evaluate

    parser = ArgumentParser(prog="python -m fairrec_ray.evaluate", description=__doc__.splitlines()[0])
    add_config_arguments(parser, EvaluateConfig)
    values, source = given_values(EvaluateConfig, parser.parse_args(argv))
    cfg = build_config(EvaluateConfig, values, source)
    result = run_evaluate(cfg, given=set(values))
    if cfg.output:
        write_json_atomic(cfg.output, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)

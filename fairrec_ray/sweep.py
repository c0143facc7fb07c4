"""``python -m fairrec_ray.sweep --config tune_configs/X.yaml [--output DIR] [--resume] [key=value ...]``.

Runs one Tune trial per point of the search space (each trial runs the job's Python entry point),
selects the fairness–accuracy front on validation metrics and writes ``trials.csv``,
``pareto.json`` (the front, with its test metrics) and ``pareto.png``. ``--resume`` continues a
stopped sweep in the same ``--output`` without re-running finished trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fairrec_ray.cli import ArgumentParser, init_ray, run_main


def main(argv: Sequence[str]) -> int:
    from fairrec_ray.config import parse_overrides
    from fairrec_ray.console import attach_log_file, detach_log_file
    from fairrec_ray.sweeps import load_sweep
    from fairrec_ray.sweeps.run import run_sweep

    parser = ArgumentParser(prog="python -m fairrec_ray.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, metavar="SWEEP.yaml")
    parser.add_argument("--output", default="runs/sweep", help="folder for trials.csv, pareto.json, pareto.png")
    parser.add_argument("--resume", action="store_true", help="continue the stopped sweep in --output")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="logical CPUs of a local Ray")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    sweep = load_sweep(args.config, parse_overrides(args.overrides))
    output = Path(args.output)
    handler = attach_log_file(output / "sweep.log")
    try:
        init_ray(args.address, num_cpus=args.num_cpus)
        summary = run_sweep(sweep, output, resume=args.resume)
    finally:
        detach_log_file(handler)
    print(f"{summary['trials']} trials, {len(summary['pareto'])} on the front (selected on validation) -> {output}")
    for row in summary["pareto"]:
        shown = {k: v for k, v in row.items() if k.startswith(("valid_", "test_"))}
        print(f"  {row['settings']}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    return 0


if __name__ == "__main__":
    run_main(main)

"""``python -m fairrec_ray.report RUN_OR_SWEEP_DIR... [--output DIR]``: one self-contained HTML page
(``report.html``, markdown ``report.md`` beside it) with the CFP front (probe leak vs hit@10, per attribute), the
FCPO front (exposure vs recall), the user-side, exposure and baseline tables of every run and the
commands that produced them. A folder that is not a run is one ``error:`` line naming it (exit 2)."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fairrec_ray.cli import ArgumentParser, run_main


def main(argv: Sequence[str]) -> int:
    from fairrec_ray.report.collect import collect_runs
    from fairrec_ray.report.page import write_report
    from fairrec_ray.report.tables import build_sections

    parser = ArgumentParser(prog="python -m fairrec_ray.report", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    parser.add_argument("--output", default="runs/report", help="folder for report.html, report.md and PNGs")
    parser.add_argument("--title", default="fairrec_ray: what did fairness cost, on both sides?")
    args = parser.parse_args(argv)
    runs = collect_runs(args.folders)
    sections = build_sections(runs)
    command = "python -m fairrec_ray.report " + " ".join(shlex.quote(a) for a in argv)
    intro = f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by: {command}"
    written = write_report(Path(args.output), args.title, intro, sections)
    print(f"{len(runs)} runs -> {written['html']} (+ {written['markdown'].name})", file=sys.stdout)
    return 0


if __name__ == "__main__":
    run_main(main)

"""Shared CLI checks: a bad input ends a job with exactly one ``error:`` line and exit status 2."""

from __future__ import annotations

import subprocess
import sys


def assert_one_line_error(module_args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", *module_args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr

"""What a job shows: what it is doing, progress with an ETA, and its results — on the console; the
rest (Ray's and the libraries' own logs, warnings, worker output) in the job's log file.

* ``Progress`` prints one line per step (epoch, iteration, trial) marked with ``PROGRESS_MARK``,
  from the driver or from a Ray worker alike.
* ``quiet_console`` (installed by ``cli.run_main`` unless ``--verbose``) routes the process's
  output: lines Ray forwards from its workers (``(RayTrainWorker pid=…) …``) go to the log file,
  except progress lines, which reach the console without Ray's prefix; the ``fairrec_ray`` loggers
  print on the console; Ray's, transformers' and Python's warnings go to the log file.
* ``attach_log_file`` adds ``OUTPUT/<job>.log``, which receives everything.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

PROGRESS_MARK = "[fairrec] "
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Ray's prefix on forwarded worker lines, e.g. "(RayTrainWorker pid=123, ip=10.0.0.1) text"
_RAY_PREFIX = re.compile(r"^\((?P<who>[^()]*pid=\d+[^()]*)\) ?(?P<text>.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FORWARDED = logging.getLogger("ray_output")  # not under "fairrec_ray": file only
_QUIET = False  # set while quiet_console is active


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """``Progress("cfp", total=4, unit="epoch").update(done, rec_loss=…)`` prints
    ``[fairrec] cfp epoch 2/4 (50%) 41 s elapsed, ETA 41 s | rec_loss 1.23``. The ETA assumes the
    remaining steps take as long as the ones timed so far (resumed steps are not timed)."""

    def __init__(self, what: str, total: int, unit: str = "epoch", start: int = 0, stream: TextIO | None = None):
        self.what, self.total, self.unit = what, total, unit
        self.start, self.started = start, time.perf_counter()
        self.stream = stream

    def line(self, done: int, **metrics: Any) -> str:
        elapsed = time.perf_counter() - self.started
        timed = max(1, done - self.start)
        eta = elapsed / timed * max(0, self.total - done)
        shown = " ".join(f"{k} {_short(v)}" for k, v in metrics.items() if v is not None)
        text = (
            f"{self.what} {self.unit} {done}/{self.total} ({100 * done / max(1, self.total):.0f}%) "
            f"{format_duration(elapsed)} elapsed, ETA {format_duration(eta)}"
        )
        return f"{text} | {shown}" if shown else text

    def update(self, done: int, **metrics: Any) -> None:
        stream = self.stream or sys.stdout
        print(PROGRESS_MARK + self.line(done, **metrics), file=stream, flush=True)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class _Router(io.TextIOBase):
    """A stdout/stderr stand-in that sorts complete lines between the console and the log."""

    def __init__(self, console: TextIO) -> None:
        self.console = console
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._route(line)
        return len(text)

    def flush(self) -> None:
        self.console.flush()

    def _route(self, line: str) -> None:
        plain = _ANSI.sub("", line)
        if PROGRESS_MARK in plain:
            self.console.write(plain.split(PROGRESS_MARK, 1)[1] + "\n")
            self.console.flush()
            return
        match = _RAY_PREFIX.match(plain)
        if match:
            _FORWARDED.info("(%s) %s", match["who"], match["text"])
        else:
            self.console.write(line + "\n")

    def fileno(self) -> int:  # subprocesses and faulthandler write to the real stream
        return self.console.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.console, "encoding", "utf-8")


def _send_to_log_file(name: str) -> None:
    library = logging.getLogger(name)
    for handler in list(library.handlers):
        library.removeHandler(handler)
    library.propagate = True


def quiet_ray() -> None:
    """Call after importing ray: Ray installs its own stderr handler on import; while the console
    is quiet, its messages go to the log file instead (errors still reach the console)."""
    if _QUIET:
        _send_to_log_file("ray")


def _quiet_libraries() -> None:
    logging.captureWarnings(True)  # warnings.warn -> logger "py.warnings" -> the log file
    for name in ("ray", "transformers", "py.warnings", "filelock", "urllib3"):
        _send_to_log_file(name)
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        hf_logging.disable_progress_bar()


@contextlib.contextmanager
def quiet_console(verbose: bool = False) -> Iterator[None]:
    """The console shows our loggers and progress; everything else goes to the log file."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    ours = logging.getLogger("fairrec_ray")
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)
        return
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours.addHandler(handler)
    errors = logging.StreamHandler(sys.stderr)  # what goes wrong elsewhere still shows
    errors.setLevel(logging.ERROR)
    errors.addFilter(lambda record: not record.name.startswith("fairrec_ray"))
    root.addHandler(errors)
    global _QUIET
    _QUIET = True
    _quiet_libraries()
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Router(out), _Router(err)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err
        _QUIET = False
        ours.removeHandler(handler)
        root.removeHandler(errors)


def attach_log_file(path: str | Path) -> logging.Handler:
    """Everything logged in this process (and every forwarded worker line) goes to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()

"""Shared CLI plumbing: one-line errors with exit status 2, ``--debug`` for the traceback,
atomic output writes, and joining a Ray cluster or starting a local one."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fairrec_ray.console import quiet_console, quiet_ray
from fairrec_ray.errors import FairrecError

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: ...``) instead of usage + message; lists
    the flags every job takes (``run_main`` consumes them before parsing)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true", help="show every log line (Ray, libraries) on the console")
        self.add_argument("--debug", action="store_true", help="debug logging; errors with their traceback")

    def error(self, message: str) -> NoReturn:
        raise FairrecError(f"{self.prog}: {message}")


def run_main(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` with the console kept to our progress and results (``--verbose``: every
    log line, Ray's and the libraries' too); a ``FairrecError`` becomes one stderr line and exit 2
    (``--debug`` re-raises it with the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, verbose = "--debug" in argv, "--verbose" in argv
    argv = [a for a in argv if a not in ("--debug", "--verbose")]
    with quiet_console(verbose=verbose or debug):
        if debug:
            logging.getLogger().setLevel(logging.DEBUG)
        try:
            from fairrec_ray.deps import check

            check()  # one line naming an untested transformers/peft/ray, before anything hooks into them
            code = main(argv)
        except FairrecError as exc:
            if debug:
                raise
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            sys.exit(130)
    sys.exit(code or 0)


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write JSON to a temp file in the same folder and rename it over ``path``: readers see the
    old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=False, default=_json_default)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join ``address`` (or ``RAY_ADDRESS``, as set by ``ray job submit``) when given, else start a
    local Ray. Idempotent: an already-initialised Ray is reused."""
    import ray

    quiet_ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # "local": always start our own Ray; a bare ray.init() would attach to any Ray already
        # running on this machine (another user's, or another job's).
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)

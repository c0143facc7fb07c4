"""Every ``python -m fairrec_ray.X`` entry point answers ``--help`` (argparse formats each help
string with ``%``, so one stray percent sign in a field's help crashes the whole CLI)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import fairrec_ray

PACKAGE = Path(fairrec_ray.__file__).parent


def _cli_modules() -> list[str]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if 'if __name__ == "__main__":' not in path.read_text():
            continue
        # A package's __main__ is imported under its own name (``fairrec_ray.data.__main__``).
        modules.append(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    return modules


def test_entry_points_are_discovered() -> None:
    assert {"fairrec_ray.train_cfp", "fairrec_ray.train_fcpo", "fairrec_ray.sweep"} <= set(_cli_modules())


@pytest.mark.parametrize("module", _cli_modules())
def test_help_exits_zero(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    # In-process (every entry point is ``main(argv)``): a subprocess per CLI would re-import torch and Ray.
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")

"""Every ``bench/`` script still imports against the package (a benchmark is not run in CI, so a
renamed module would otherwise rot unnoticed until someone needs the numbers)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


@pytest.mark.skipif(not SCRIPTS, reason="no bench/ folder beside tests/ (installed package only)")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_imports(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # bench scripts import their sibling helpers
    spec = importlib.util.spec_from_file_location(f"bench_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # top level only: main() runs under ``if __name__ == "__main__"``
    assert callable(getattr(module, "main", None)) or script.stem.startswith("reference_"), script.name

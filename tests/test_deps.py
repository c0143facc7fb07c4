"""Tested dependency ranges: pyproject and the runtime check agree, and an untested release stops a
job with one line naming the package, its version and the tested range."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from fairrec_ray import deps

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_bounds_are_the_tested_ranges():
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    specs = {Requirement(r).name: Requirement(r).specifier for r in requirements}
    for name, tested in deps.TESTED.items():
        assert specs[name] == Requirement(f"{name}{tested}").specifier, name
        assert any(s.operator == "<" for s in specs[name]), f"{name} needs an upper bound"


def test_installed_versions_are_within_the_tested_ranges():
    assert deps.untested() == []


def _fake_release(root: Path, name: str, version: str) -> Path:
    """A dist-info that importlib.metadata finds before the real one (first on sys.path)."""
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root


def _run(args: list[str], env_extra: dict[str, str], fake: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{ROOT}", **env_extra}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def test_an_untested_release_stops_a_cli_with_one_line(tmp_path):
    fake = _fake_release(tmp_path, "transformers", "9.9.0")
    done = _run(["-m", "fairrec_ray.train_cfp", "--help"], {}, fake)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "error: transformers 9.9.0 is outside the range fairrec_ray was tested with (>=5.23,<5.25); install a "
        "tested one (pip install 'transformers>=5.23,<5.25') or set FAIRREC_ALLOW_UNTESTED=1 to try it anyway"
    ]


def test_the_library_refuses_too_and_the_override_turns_it_into_a_warning(tmp_path):
    fake = _fake_release(tmp_path, "ray", "2.99.0")
    code = "import fairrec_ray.fcpo; print('imported')"
    refused = _run(["-c", code], {}, fake)
    assert refused.returncode != 0 and "ray 2.99.0 is outside the range" in refused.stderr
    allowed = _run(["-W", "always", "-c", code], {deps.ALLOW_ENV: "1"}, fake)
    assert allowed.returncode == 0 and "imported" in allowed.stdout
    assert "ray 2.99.0 is outside the range" in allowed.stderr


@pytest.mark.parametrize(("version", "ok"), [("5.23.0", True), ("5.24.9", True), ("5.25.0", False), ("5.22.2", False)])
def test_range_edges(monkeypatch, version, ok):
    monkeypatch.setattr(deps.metadata, "version", lambda name: version)
    assert (deps.untested(("transformers",)) == []) is ok

"""Read run folders into typed records. A folder is recognised by what it holds:

* ``results.json`` of a CFP run (``backbone`` + ``cfp``), a mixture run (``subsets``), an
  adversarial-MF run (``kind: adversarial_mf``) or an FCPO run (``final_test`` + ``cost_limit``);
* ``bench_fcpo.json`` (``bench/bench_fcpo.py --out``): MostPop / MF / MF re-rank / FCPO at each α;
* ``pareto.json`` + ``trials.csv`` of a sweep.

Anything else is one :class:`FairrecError` line naming the folder and what is missing.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairrec_ray.errors import FairrecError

KINDS = ("cfp", "mixture", "adversarial_mf", "fcpo", "fcpo_bench", "sweep")
COMMAND_FILE = "command.txt"  # optional: the exact command that produced the folder
EXPECTED = (
    "results.json (CFP, mixture, adversarial-MF or FCPO run), bench_fcpo.json, or pareto.json + trials.csv (sweep)"
)


@dataclass
class Run:
    kind: str
    folder: Path
    payload: dict[str, Any]
    command: str
    trials: list[dict[str, Any]] = field(default_factory=list)  # sweeps: trials.csv rows

    @property
    def name(self) -> str:
        return self.folder.name


def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FairrecError(f"{path}: unreadable JSON ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict):
        raise FairrecError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


def _need(path: Path, payload: dict[str, Any], kind: str, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in payload]
    if missing:
        raise FairrecError(f"{path}: looks like a {kind} run but lacks {', '.join(missing)}")


def classify(path: Path, payload: dict[str, Any]) -> str:
    """The kind of a ``results.json`` payload (or one line saying what is missing)."""
    if payload.get("kind") == "adversarial_mf":
        _need(path, payload, "adversarial-MF", ("attribute", "plain", "filtered"))
        return "adversarial_mf"
    if "subsets" in payload:
        _need(path, payload, "mixture", ("backbone", "config"))
        return "mixture"
    if "cfp" in payload or "best_epoch" in payload:
        _need(path, payload, "CFP", ("attribute", "backbone", "cfp", "config"))
        return "cfp"
    if "cost_limit" in payload or "final_test" in payload:
        _need(path, payload, "FCPO", ("final_test", "cost_limit", "config"))
        return "fcpo"
    keys = ", ".join(sorted(payload)[:6]) or "nothing"
    raise FairrecError(
        f"{path}: not a recognised run (has {keys}; expected a CFP, mixture, adversarial-MF or FCPO results.json)"
    )


_MODULES = {
    "cfp": ("fairrec_ray.train_cfp", "fairrec_ray.cfp.config", "CFPConfig"),
    "adversarial_mf": (
        "fairrec_ray.train_adversarial_mf",
        "fairrec_ray.baselines.adversarial_mf_job",
        "AdvMFJobConfig",
    ),
    "fcpo": ("fairrec_ray.train_fcpo", "fairrec_ray.fcpo.job", "FCPOJobConfig"),
}


def rebuild_command(kind: str, config: dict[str, Any]) -> str:
    """``python -m MODULE --key value ...`` with the keys whose value differs from the default."""
    import importlib

    if kind not in _MODULES:
        return ""
    module, config_module, cls_name = _MODULES[kind]
    cls = getattr(importlib.import_module(config_module), cls_name)
    parts = [f"python -m {module}"]
    for f in dataclasses.fields(cls):
        if f.name not in config or f.default is dataclasses.MISSING:
            continue
        value = config[f.name]
        default = f.default
        if value == default or (isinstance(default, tuple) and value == list(default)):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _command(folder: Path, kind: str, payload: dict[str, Any]) -> str:
    given = folder / COMMAND_FILE
    if given.is_file():
        return given.read_text().strip()
    return rebuild_command(kind, payload.get("config") or {})


def read_run(folder: str | Path) -> Run:
    """One folder -> a :class:`Run`; a bad folder is one line naming it and what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FairrecError(f"{folder}: not a folder (expected a run or sweep folder holding {EXPECTED})")
    results = folder / "results.json"
    if results.is_file():
        payload = _read_json(results)
        kind = classify(results, payload)
        return Run(kind, folder, payload, _command(folder, kind, payload))
    bench = folder / "bench_fcpo.json"
    if bench.is_file():
        payload = _read_json(bench)
        if "baselines" not in payload and "quality" not in payload:
            raise FairrecError(f"{bench}: looks like a bench_fcpo run but lacks baselines and quality")
        return Run("fcpo_bench", folder, payload, _command(folder, "fcpo_bench", payload))
    pareto = folder / "pareto.json"
    if pareto.is_file() or (folder / "trials.csv").is_file():
        if not pareto.is_file() or not (folder / "trials.csv").is_file():
            missing = "pareto.json" if not pareto.is_file() else "trials.csv"
            raise FairrecError(f"{folder}: a sweep folder without {missing} (did the sweep finish?)")
        import pandas as pd

        payload = _read_json(pareto)
        _need(pareto, payload, "sweep", ("job", "objectives"))
        try:
            trials = pd.read_csv(folder / "trials.csv").to_dict(orient="records")
        except (OSError, ValueError) as exc:
            raise FairrecError(f"{folder / 'trials.csv'}: unreadable CSV ({type(exc).__name__})") from None
        return Run("sweep", folder, payload, _command(folder, "sweep", payload), trials)
    raise FairrecError(f"{folder}: no run found; expected {EXPECTED}")


def collect_runs(folders: list[str] | list[Path]) -> list[Run]:
    if not folders:
        raise FairrecError("give at least one run or sweep folder")
    return [read_run(f) for f in folders]

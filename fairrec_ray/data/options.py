"""``DataOptions``: which dataset a job reads, in one place.

Every job config inherits these fields (flat keys: ``--dataset``, ``--data-dir``,
``synthetic_users=…``), so a flag means the same thing in every job; a job may redeclare a field
to change only its default (the CFP demo's 300 synthetic users). ``data_spec`` is what a model
folder records about the data it was trained on, so evaluation and serving read it back instead of
rebuilding the dataset from flags.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairrec_ray.data.registry import DATASETS, load_dataset
from fairrec_ray.data.schema import RecDataset
from fairrec_ray.data.splits import LeaveOneOutSplit, leave_one_out
from fairrec_ray.data.synthetic import SyntheticConfig
from fairrec_ray.errors import ConfigError

DATA_SPEC_FILE = "data_spec.json"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class DataOptions:
    dataset: str = field(default="synthetic", metadata=_help(f"dataset name: {', '.join(DATASETS)}"))
    data_dir: str | None = field(default=None, metadata=_help("folder with the dataset's original files"))
    seed: int = field(default=0, metadata=_help("seed of the data (synthetic generator, Insurance order) and the job"))
    min_interactions: int = field(default=3, metadata=_help("leave-one-out: drop users with fewer interactions"))
    synthetic_users: int = field(default=943, metadata=_help("synthetic: users"))
    synthetic_items: int = field(default=1682, metadata=_help("synthetic: items"))
    synthetic_interactions: float = field(default=106.0, metadata=_help("synthetic: mean interactions per user"))
    synthetic_genres: int = field(default=18, metadata=_help("synthetic: genres (binge structure)"))
    synthetic_signal: float = field(default=1.0, metadata=_help("synthetic: planted attribute -> taste (0: none)"))

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"{key}: got {getattr(self, key)!r}; expected {rule}")

        need(self.dataset in DATASETS, "dataset", f"one of {list(DATASETS)}")
        if self.dataset != "synthetic":
            need(self.data_dir is not None, "data_dir", f"a folder with the {self.dataset} files (--data-dir)")
        need(self.min_interactions >= 2, "min_interactions", ">= 2 (one training and one held-out item)")
        need(self.synthetic_users >= 2, "synthetic_users", ">= 2")
        need(self.synthetic_items >= 10, "synthetic_items", ">= 10")
        need(self.synthetic_genres >= 2, "synthetic_genres", ">= 2")
        need(self.synthetic_interactions >= 3, "synthetic_interactions", ">= 3")
        need(self.synthetic_signal >= 0, "synthetic_signal", ">= 0")

    def synthetic_config(self) -> SyntheticConfig:
        return SyntheticConfig(
            n_users=self.synthetic_users,
            n_items=self.synthetic_items,
            mean_interactions=self.synthetic_interactions,
            n_genres=self.synthetic_genres,
            signal=self.synthetic_signal,
            min_interactions=min(20, int(self.synthetic_interactions)),
            seed=self.seed,
        )

    def load(self) -> RecDataset:
        return load_dataset(self.dataset, self.data_dir, seed=self.seed, synthetic=self.synthetic_config())

    def load_split(self) -> tuple[RecDataset, LeaveOneOutSplit]:
        """The dataset and its leave-one-out split (P5, CFP, evaluation, serving)."""
        dataset = self.load()
        return dataset, leave_one_out(dataset, self.min_interactions)


DATA_FIELDS = tuple(f.name for f in dataclasses.fields(DataOptions))


def data_options(config: Any) -> DataOptions:
    """The ``DataOptions`` part of any job config (or of a dict of its fields)."""
    values = config if isinstance(config, dict) else dataclasses.asdict(config)
    return DataOptions(**{k: values[k] for k in DATA_FIELDS if k in values})


def data_spec(config: Any) -> dict[str, Any]:
    """What a model folder records about its training data (``data_dir`` made absolute)."""
    spec = dataclasses.asdict(data_options(config))
    if spec["data_dir"] is not None:
        spec["data_dir"] = str(Path(spec["data_dir"]).resolve())
    return spec


def write_data_spec(config: Any, folder: str | Path) -> Path:
    path = Path(folder) / DATA_SPEC_FILE
    path.write_text(json.dumps(data_spec(config), indent=2) + "\n")
    return path


def read_data_spec(folder: str | Path) -> DataOptions | None:
    """The ``DataOptions`` a model folder was trained on, or None for a folder without a spec
    (a model trained before specs were written, or a foreign checkpoint)."""
    path = Path(folder) / DATA_SPEC_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
        return DataOptions(**{k: v for k, v in values.items() if k in DATA_FIELDS})
    except (ValueError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{path}: unreadable data spec ({exc})") from None

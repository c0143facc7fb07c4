"""Where a training loop runs: on Ray Train workers, or in this process.

The P5 and CFP loops take a ``LoopContext`` — rank and world size, the checkpoint to resume from,
a folder for the next checkpoint, ``report(metrics, folder)`` — so one loop serves both:

* ``RayTrainContext`` wraps ``ray.train``'s worker API (``get_context``, ``get_checkpoint``,
  ``report``): data-parallel workers, checkpoints in the run's storage;
* ``LocalContext`` runs the loop in the calling process with checkpoints in a local folder. It is
  what ``num_workers=0`` means, and it works inside a Tune trial too, where Ray 2.60 refuses
  ``ray.train.get_context()`` (so Ray Train's own in-process mode cannot serve there).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

DONE_MARKER = ".complete"  # written last into a local checkpoint folder: without it the folder is partial


class LoopContext(Protocol):
    rank: int
    world: int

    def latest_checkpoint(self) -> Path | None: ...

    def new_checkpoint_dir(self, epoch: int) -> Path: ...

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None: ...


class RayTrainContext:
    """A Ray Train worker. Every rank must call ``report`` the same number of times (a barrier);
    only rank 0 passes a checkpoint."""

    def __init__(self) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()

    def latest_checkpoint(self) -> Path | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        return Path(checkpoint.to_directory()) if checkpoint is not None else None

    def new_checkpoint_dir(self, epoch: int) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"ckpt_{epoch:04d}_"))

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        import ray.train

        if checkpoint is None:
            ray.train.report(metrics)
            return
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint)))
        shutil.rmtree(checkpoint, ignore_errors=True)  # Ray has persisted its copy


class LocalContext:
    """This process is the only rank; checkpoints are ``root/epoch_NNNN`` folders (the newest
    ``keep`` of them, all when ``keep`` is None)."""

    rank = 0
    world = 1

    def __init__(self, root: str | Path, keep: int | None = None) -> None:
        self.root = Path(root)
        self.keep = keep
        self.reports: list[dict[str, Any]] = []

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint folders, oldest first."""
        if not self.root.is_dir():
            return []
        done = [p for p in self.root.glob("epoch_*") if (p / DONE_MARKER).is_file()]
        return sorted(done, key=lambda p: int(p.name.split("_")[1]))

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def new_checkpoint_dir(self, epoch: int) -> Path:
        folder = self.root / f"epoch_{epoch:04d}"
        shutil.rmtree(folder, ignore_errors=True)  # a partial one from an interrupted run
        folder.mkdir(parents=True)
        return folder

    def report(self, metrics: dict[str, Any], checkpoint: Path | None = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint is None:
            return
        (checkpoint / DONE_MARKER).write_text(json.dumps(metrics, default=str))
        if self.keep is not None:
            for old in self.checkpoints()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)

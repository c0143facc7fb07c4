"""Data layer: one dataset object for every capability (see ``RecDataset``)."""

from fairrec_ray.data.registry import DATASETS, load_dataset
from fairrec_ray.data.schema import RecDataset
from fairrec_ray.data.splits import (
    NO_ITEM,
    FCPONotApplicable,
    FCPOSplit,
    LeaveOneOutSplit,
    fcpo_split,
    leave_one_out,
    popular_items,
)
from fairrec_ray.data.synthetic import SyntheticConfig, generate_synthetic

__all__ = [
    "DATASETS",
    "NO_ITEM",
    "FCPONotApplicable",
    "FCPOSplit",
    "LeaveOneOutSplit",
    "RecDataset",
    "SyntheticConfig",
    "fcpo_split",
    "generate_synthetic",
    "leave_one_out",
    "load_dataset",
    "popular_items",
]

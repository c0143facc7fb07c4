"""Ray Tune sweeps over the fairness knobs and the fairness–accuracy Pareto front.

``config`` (sweep files, checked before anything runs), ``jobs`` (the registry of sweepable jobs and
what they report), ``run`` (Tune), ``pareto`` (front selected on validation, reported on test).
"""

from fairrec_ray.sweeps.config import SweepConfig, load_sweep, to_tune_space
from fairrec_ray.sweeps.jobs import JOBS, TEST, VALID, SweepJob
from fairrec_ray.sweeps.pareto import pareto_table, plot_front

__all__ = [
    "JOBS",
    "TEST",
    "VALID",
    "SweepConfig",
    "SweepJob",
    "load_sweep",
    "pareto_table",
    "plot_front",
    "to_tune_space",
]

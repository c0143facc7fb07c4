"""fairrec_ray: fairness-aware recommendation (CFP, FCPO, Tune sweeps) on Ray."""

__version__ = "0.2.0"

"""fairrec_ray: fairness-aware recommendation (CFP, FCPO, Tune sweeps) on Ray."""

__version__ = "0.1.0"

"""FCPO: fairness-constrained policy optimisation (Ge et al., WSDM 2021) with CPO on Ray RLlib.

Public API: ``build_env_data`` -> ``FCPOConfig().recommendation(data=...).training(alpha=...)``
-> ``config.build_algo()`` (an ``FCPO`` Algorithm); ``evaluate_policy`` for test metrics.
Submodules import Ray lazily only where needed: ``fcpo.cpo`` stays Ray-free.
"""

from fairrec_ray.deps import check

check(("ray",))  # RLlib's Algorithm/Learner/EnvRunner are subclassed here: refuse untested releases

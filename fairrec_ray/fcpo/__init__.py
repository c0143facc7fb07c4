"""FCPO: fairness-constrained policy optimisation (Ge et al., WSDM 2021) with CPO on Ray RLlib.

Public API: ``build_env_data`` -> ``FCPOConfig().recommendation(data=...).training(alpha=...)``
(``fcpo.algorithm``) -> ``config.build_algo()`` (an ``FCPO`` Algorithm); ``evaluation.policy_metrics``
for validation/test metrics; the job (``fcpo.job``: ``FCPOJobConfig``, ``run_fcpo``) wraps it all.
Ray-free: ``settings``, ``cpo``, ``advantages``, ``surrogates``, ``prior``, ``env``, ``env_data``.
"""

from fairrec_ray.deps import check

check(("ray",))  # RLlib's Algorithm/Learner/EnvRunner are subclassed here: refuse untested releases

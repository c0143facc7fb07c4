"""FCPO's knobs with their one default, one help text and one rule each (no Ray, no torch).

``FCPOSettings`` holds every knob of ``FCPOConfig.training()`` and ``.recommendation()``;
``EnvDataOptions`` every knob of ``build_env_data``. ``FCPOConfig`` takes its defaults from the
first and validates with :func:`check_settings`; the job config (``fcpo.job.FCPOJobConfig``)
inherits both dataclasses, so each knob is a ``--flag``, a ``key=value``, a YAML key and a sweep
key with the same default and the same error. Kept free of Ray and torch so that
``python -m fairrec_ray.train_fcpo --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fairrec_ray.errors import ConfigError


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def check_alpha(alpha: Any) -> None:
    """The one alpha rule: a finite number > 0, or None for no constraint."""
    if alpha is None:
        return
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (math.isfinite(alpha) and alpha > 0):
        raise ConfigError(
            f"alpha: got {alpha!r}; expected a finite number > 0 (popular share <= alpha/(1+alpha)), "
            "or none for no constraint"
        )


@dataclass
class FCPOSettings:
    """``FCPOConfig.training()`` / ``.recommendation()`` knobs (see their docstrings). The defaults of
    ``init_log_std``, ``feasible_init``, ``feasible_margin`` and ``cost_margin`` were selected on the
    ML-100K validation split (README, FCPO); the others follow the reference where it is sound."""

    # -- constraint and CPO step (training)
    alpha: float | None = field(
        default=None, metadata=_help("fairness level: popular share <= alpha/(1+alpha); none = unconstrained")
    )
    max_kl: float = field(default=0.1, metadata=_help("CPO trust region delta (mean KL per step)"))
    cg_iters: int = field(default=10, metadata=_help("conjugate-gradient iterations"))
    damping: float = field(default=0.1, metadata=_help("Fisher damping: H + damping * I"))
    fvp_subsample: float = field(default=0.1, metadata=_help("share of rows used for Fisher-vector products"))
    line_search_steps: int = field(default=15, metadata=_help("backtracking candidates decay^i, i < steps"))
    line_search_decay: float = field(default=0.8, metadata=_help("backtracking factor"))
    cost_margin: float = field(
        default=0.0, metadata=_help("the CPO step aims at (1 - cost_margin) * d: c = J_C - (1 - cost_margin) * d")
    )
    # -- advantages (training)
    gamma_r: float = field(default=0.99, metadata=_help("reward discount"))
    gamma_c: float = field(default=0.99, metadata=_help("cost discount (also used for d)"))
    gae_lambda: float = field(default=0.95, metadata=_help("GAE lambda (reward and cost)"))
    # -- actor (training)
    actor_prior: Literal["fold_in", "none"] = field(
        default="fold_in", metadata=_help("fold_in: residual policy around the MF fold-in query; none: plain MLP")
    )
    init_log_std: float = field(
        default=-2.5, metadata=_help("initial log std of the Gaussian policy (selected on validation, README)")
    )
    feasible_init: bool = field(
        default=True,
        metadata=_help("start the popular-score offset where the sampling policy meets d (fold_in + exposure)"),
    )
    feasible_margin: float = field(
        default=0.0, metadata=_help("feasible_init aims at (1 - feasible_margin) * d (selected on validation: 0)")
    )
    # -- critics (training)
    critic_lr: float = field(default=1e-3, metadata=_help("critic Adam learning rate"))
    critic_iters: int = field(default=2, metadata=_help("critic passes over the batch per iteration"))
    critic_minibatch_size: int | None = field(default=1024, metadata=_help("rows per critic step (none: full batch)"))
    # -- env (recommendation)
    top_k: int = field(default=10, metadata=_help("K, items recommended per step"))
    horizon: int = field(default=10, metadata=_help("T, steps per episode"))
    users_per_env_runner: int | None = field(
        default=None, metadata=_help("users each EnvRunner steps per iteration (none: its whole shard)")
    )
    fast_rollouts: bool = field(default=True, metadata=_help("columnar rollouts (false: RLlib's episode path)"))

    def __post_init__(self) -> None:
        check_settings(self)


RECOMMENDATION_KEYS = ("top_k", "horizon", "users_per_env_runner", "fast_rollouts")
SETTINGS_KEYS = tuple(f.name for f in dataclasses.fields(FCPOSettings))
TRAINING_KEYS = tuple(k for k in SETTINGS_KEYS if k not in RECOMMENDATION_KEYS)

_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_kl": (lambda v: v > 0, "> 0 (e.g. 0.1)"),
    "cg_iters": (lambda v: v >= 1, "an integer >= 1 (e.g. 10)"),
    "damping": (lambda v: v >= 0, ">= 0 (e.g. 0.1)"),
    "fvp_subsample": (lambda v: 0 < v <= 1, "in (0, 1] (e.g. 0.1)"),
    "line_search_steps": (lambda v: v >= 1, "an integer >= 1 (e.g. 15)"),
    "line_search_decay": (lambda v: 0 < v < 1, "in (0, 1) (e.g. 0.8)"),
    "cost_margin": (lambda v: 0 <= v < 1, "in [0, 1) (e.g. 0.03)"),
    "gamma_r": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "gamma_c": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "gae_lambda": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "actor_prior": (lambda v: v in ("fold_in", "none"), "'fold_in' or 'none'"),
    "init_log_std": (lambda v: math.isfinite(v), "a finite number (e.g. -0.5)"),
    "feasible_init": (lambda v: isinstance(v, bool), "true or false"),
    "feasible_margin": (lambda v: 0 <= v < 1, "in [0, 1) (e.g. 0.0)"),
    "critic_lr": (lambda v: v > 0, "> 0 (e.g. 1e-3)"),
    "critic_iters": (lambda v: v >= 0, "an integer >= 0"),
    "critic_minibatch_size": (lambda v: v is None or v >= 1, "an integer >= 1, or none for the full batch"),
    "top_k": (lambda v: v >= 1, "an integer >= 1 (e.g. 10)"),
    "horizon": (lambda v: v >= 1, "an integer >= 1 (e.g. 10)"),
    "users_per_env_runner": (lambda v: v is None or v >= 1, "an integer >= 1, or none for the runner's whole shard"),
    "fast_rollouts": (lambda v: isinstance(v, bool), "true or false"),
}


def check_setting(key: str, value: Any) -> None:
    """Raise ``ConfigError`` naming ``key``, ``value`` and the rule when ``value`` breaks it."""
    if key == "alpha":
        check_alpha(value)
        return
    ok, rule = _RULES[key]
    try:
        good = bool(ok(value))
    except TypeError:
        good = False
    if not good:
        raise ConfigError(f"{key}: got {value!r}; expected {rule}")


def check_settings(values: Any) -> None:
    """Check every ``FCPOSettings`` key of ``values`` (a dataclass or an ``FCPOConfig``)."""
    for key in SETTINGS_KEYS:
        check_setting(key, getattr(values, key))


@dataclass
class EnvDataOptions:
    """``build_env_data`` knobs: the FCPO split, item groups and the MF embeddings."""

    positive_threshold: float = field(default=4.0, metadata=_help("rating >= this is a positive"))
    n_start: int = field(default=5, metadata=_help("positives in the start state"))
    train_share: float = field(default=0.8, metadata=_help("share of the later positives before the test part"))
    valid_share: float = field(
        default=0.1, metadata=_help("share of the later positives, from the end of the train part, for validation")
    )
    popular_share: float = field(default=0.2, metadata=_help("share of items in the popular group G0"))
    emb_dim: int = field(default=16, metadata=_help("item embedding size of our MF"))
    mf_reg: float = field(default=10.0, metadata=_help("ridge of the MF"))
    mf_iters: int = field(default=15, metadata=_help("ALS iterations of the MF"))
    exposure_feature: float = field(
        default=1.0,
        metadata=_help("scale (in typical MF score gaps) of the action's popular-item score offset; 0 = none"),
    )

    def __post_init__(self) -> None:
        rules = (
            ("n_start", self.n_start >= 1, "an integer >= 1"),
            ("train_share", 0 < self.train_share < 1, "in (0, 1)"),
            ("valid_share", 0 <= self.valid_share < self.train_share, f"in [0, train_share = {self.train_share})"),
            ("popular_share", 0 < self.popular_share < 1, "in (0, 1)"),
            ("emb_dim", self.emb_dim >= 1, "an integer >= 1 (e.g. 16)"),
            ("mf_reg", self.mf_reg >= 0, ">= 0"),
            ("mf_iters", self.mf_iters >= 1, "an integer >= 1"),
            ("exposure_feature", self.exposure_feature >= 0, ">= 0 (0 = no popular offset)"),
        )
        for key, ok, rule in rules:
            if not ok:
                raise ConfigError(f"{key}: got {getattr(self, key)!r}; expected {rule}")


ENV_DATA_KEYS = tuple(f.name for f in dataclasses.fields(EnvDataOptions))


def pick(values: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """``{key: values.key}`` for ``keys``."""
    return {key: getattr(values, key) for key in keys}

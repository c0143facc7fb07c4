"""``FCPOConfig`` and ``FCPO``: the CPO algorithm on RLlib's new API stack (laid out as RLlib's ``ppo.py``).

Usage::

    config = (
        FCPOConfig()
        .recommendation(data=build_env_data(dataset), top_k=10, horizon=10)
        .training(alpha=0.25, max_kl=0.1)
        .env_runners(num_env_runners=2)
    )
    algo = config.build_algo()

``FCPO.training_step`` only samples, measures the batch's episode cost (J_C, passed to the learner
in ``timesteps``), updates and syncs weights. With ``fast_rollouts`` (default) the EnvRunners return
a dense [users, T] rollout table (``env_runner.FCPOEnvRunner``) that goes to the learner as a ready
train batch; otherwise RLlib's episode + connector path is used (same maths, slower).
Every knob's default and rule live in ``fcpo.settings.FCPOSettings``.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)
from ray.tune.registry import register_env

from fairrec_ray.errors import ConfigError
from fairrec_ray.fcpo import keys
from fairrec_ray.fcpo.cpo import cost_limit_from_alpha
from fairrec_ray.fcpo.embeddings import fold_in_query
from fairrec_ray.fcpo.env import check_env_sizes, make_rec_vector_env
from fairrec_ray.fcpo.env_data import RecEnvData
from fairrec_ray.fcpo.env_runner import FCPOEnvRunner, episode_stats, merge_columns, train_batch_columns
from fairrec_ray.fcpo.settings import (
    RECOMMENDATION_KEYS,
    SETTINGS_KEYS,
    TRAINING_KEYS,
    FCPOSettings,
    check_setting,
    check_settings,
)

ENV_NAME = "fairrec-fcpo-rec-v0"
_DEFAULTS = FCPOSettings()


class FCPOConfig(AlgorithmConfig):
    """CPO hyper-parameters and the recommendation env; defaults from ``FCPOSettings``."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or FCPO)
        for key in SETTINGS_KEYS:
            setattr(self, key, getattr(_DEFAULTS, key))
        self.learner_torch_threads: int | None = 1  # None: leave torch's default
        # Derived in validate() (feasible_init): the actor prior's starting exposure offset.
        self.prior_exposure_offset = 0.0
        self._offset_key: tuple | None = None
        # RLlib settings this algorithm relies on
        self.batch_mode = "complete_episodes"
        self.gym_env_vectorize_mode = "vector_entry_point"
        self.normalize_actions = False  # w is unbounded; ranking only depends on its direction
        self.clip_actions = False
        self.num_env_runners = 0
        self.env_runner_cls = FCPOEnvRunner

    # -- builder methods ----------------------------------------------------------------------
    def recommendation(
        self,
        *,
        data: RecEnvData | Any = NotProvided,
        top_k: int | Any = NotProvided,
        horizon: int | Any = NotProvided,
        users_per_env_runner: int | None | Any = NotProvided,
        fast_rollouts: bool | Any = NotProvided,
    ) -> Self:
        """The recommendation env.

        Args:
            data: ``RecEnvData`` (``fcpo.env_data.build_env_data``), shipped to every EnvRunner.
            top_k: K, items recommended per step.
            horizon: T, steps per episode.
            users_per_env_runner: users (= vector sub-envs) each EnvRunner steps per iteration,
                drawn in turn from its shard of the training users; None: the whole shard (one
                episode per training user and iteration).
            fast_rollouts: sample a dense [users, T] table and train on it as a ready batch
                (default); False = RLlib's per-episode path (same maths, slower).
        """
        self._set(RECOMMENDATION_KEYS, locals())
        env_config = dict(self.env_config or {})
        if data is not NotProvided:
            env_config["data"] = data
        env_config.update(top_k=self.top_k, horizon=self.horizon)
        self.environment(env=ENV_NAME, env_config=env_config)
        return self

    def training(
        self,
        *,
        alpha: float | None | Any = NotProvided,
        max_kl: float | Any = NotProvided,
        cg_iters: int | Any = NotProvided,
        damping: float | Any = NotProvided,
        fvp_subsample: float | Any = NotProvided,
        line_search_steps: int | Any = NotProvided,
        line_search_decay: float | Any = NotProvided,
        cost_margin: float | Any = NotProvided,
        gamma_r: float | Any = NotProvided,
        gamma_c: float | Any = NotProvided,
        gae_lambda: float | Any = NotProvided,
        actor_prior: str | Any = NotProvided,
        init_log_std: float | Any = NotProvided,
        feasible_init: bool | Any = NotProvided,
        feasible_margin: float | Any = NotProvided,
        critic_lr: float | Any = NotProvided,
        critic_iters: int | Any = NotProvided,
        critic_minibatch_size: int | None | Any = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """CPO settings.

        Args:
            alpha: fairness level; the popular (G0) share of recommendations must stay below
                alpha / (1 + alpha), i.e. d = sum_t gamma_c^t * alpha/(1+alpha) * K. None = no
                constraint (plain natural-gradient TRPO-style steps; "CPO with d = inf").
            max_kl: trust region delta (mean KL of the new policy from the old one).
            cg_iters: conjugate-gradient iterations for H^-1 g and H^-1 b.
            damping: Fisher damping: H + damping * I.
            fvp_subsample: share of rows (in (0, 1]) the Fisher-vector products of CG use (the
                line search still measures KL on every row).
            line_search_steps: backtracking candidates decay^i * step, i < line_search_steps.
            line_search_decay: backtracking factor in (0, 1).
            cost_margin: the CPO step aims at (1 - cost_margin) * d (c = J_C - (1 - cost_margin) * d),
                because its first-order cost model is optimistic when it trades reward against
                cost (README, FCPO); d itself is still the limit reported and evaluated.
            gamma_r: reward discount (GAE and critic targets).
            gamma_c: cost discount (cost GAE, J_C and the limit d).
            gae_lambda: GAE lambda for both reward and cost.
            actor_prior: "fold_in": the actor's mean is the MF fold-in query of the state window
                (a trainable linear map initialised so) plus a zero-initialised MLP residual, so RL
                starts from an MF-quality recommender; "none": a plain MLP.
            init_log_std: initial log std of the (state-independent) Gaussian policy.
            feasible_init: with a limit, start the fold-in prior's popular-score offset (the
                exposure coordinate of the action) where the *sampling* policy's J_C on the
                training users is ``(1 - feasible_margin) * d`` (``fcpo.prior``), so CPO starts
                feasible instead of spending its first iterations in recovery steps. Needs
                ``actor_prior="fold_in"`` and env data with an exposure coordinate.
            feasible_margin: the share of d left below the start, in [0, 1).
            critic_lr: Adam learning rate of both critics.
            critic_iters: critic regression passes per iteration.
            critic_minibatch_size: rows per critic step (None: full batch).
        """
        super().training(**kwargs)
        self._set(TRAINING_KEYS, locals())
        self.gamma, self.lambda_ = self.gamma_r, self.gae_lambda  # RLlib's own names, same values
        return self

    def _set(self, names: tuple[str, ...], given: dict[str, Any]) -> None:
        for key in names:
            value = given[key]
            if value is not NotProvided:
                check_setting(key, value)
                setattr(self, key, value)

    # -- derived values and checks --------------------------------------------------------------
    @property
    def cost_limit(self) -> float:
        """d, per episode and discounted like J_C; inf when ``alpha`` is None."""
        if self.alpha is None:
            return math.inf
        return cost_limit_from_alpha(self.alpha, self.top_k, self.horizon, self.gamma_c)

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        base = super()._model_config_auto_includes | {
            "horizon": getattr(self, "horizon", _DEFAULTS.horizon),
            "init_log_std": getattr(self, "init_log_std", _DEFAULTS.init_log_std),
        }
        data = (self.env_config or {}).get("data")
        if getattr(self, "actor_prior", None) == "fold_in" and isinstance(data, RecEnvData):
            query = fold_in_query(data.item_emb, data.mf_reg, data.train_start)
            offset = float(getattr(self, "prior_exposure_offset", 0.0))
            base = base | {"prior_query": query.tolist(), "prior_exposure_offset": offset}
        return base

    @property
    def env_data(self) -> RecEnvData:
        data = (self.env_config or {}).get("data")
        if not isinstance(data, RecEnvData):
            raise ConfigError("FCPOConfig: no env data; call .recommendation(data=build_env_data(dataset))")
        return data

    def validate(self) -> None:
        # Registered here (not at import): validate() runs on build and on restore, in every
        # process that builds the algorithm, before RLlib resolves the env name.
        register_env(ENV_NAME, make_rec_vector_env)
        super().validate()
        check_settings(self)
        data = self.env_data
        check_env_sizes(data.n_items, data.n_start, self.top_k, self.horizon)
        if self.num_learners not in (0, 1):
            raise ConfigError(
                f"num_learners: got {self.num_learners!r}; expected 0 or 1 (DDP would not sync the CPO step)"
            )
        if self.num_env_runners > data.n_users:
            raise ConfigError(
                f"num_env_runners: got {self.num_env_runners}; expected at most the {data.n_users} training users"
            )
        self._set_prior_exposure_offset(data)
        # Upper bound of a runner's vector size (its shard; see FCPOEnvRunner.make_env).
        shard = math.ceil(data.n_users / max(1, self.num_env_runners))
        self.num_envs_per_env_runner = min(shard, self.users_per_env_runner or shard)

    def _set_prior_exposure_offset(self, data: RecEnvData) -> None:
        """``feasible_init``: calibrate once per (data, limit, policy noise); 0 otherwise."""
        if not self.feasible_init or self.alpha is None:
            self.prior_exposure_offset, self._offset_key = 0.0, None
            return
        if self.actor_prior != "fold_in" or data.exposure_scale <= 0:
            raise ConfigError(
                f"feasible_init: got True with actor_prior={self.actor_prior!r} and exposure_feature "
                f"{'> 0' if data.exposure_scale > 0 else '= 0'}; it moves the fold_in prior's exposure "
                "coordinate: use actor_prior='fold_in' with exposure_feature > 0, or feasible_init=false"
            )
        target = (1.0 - self.feasible_margin) * self.cost_limit
        key = (data.fingerprint(), target, self.top_k, self.horizon, self.gamma_c, self.init_log_std, self.seed)
        if key == self._offset_key:
            return
        from fairrec_ray.fcpo.prior import calibrate_exposure_offset

        query = fold_in_query(data.item_emb, data.mf_reg, data.train_start)
        self.prior_exposure_offset = calibrate_exposure_offset(
            data, query, target, top_k=self.top_k, horizon=self.horizon, gamma_c=self.gamma_c,
            log_std=self.init_log_std, seed=int(self.seed or 0),
        )  # fmt: skip
        self._offset_key = key

    def get_state(self) -> dict[str, Any]:
        # RLlib's get_state() drops every attribute equal to its DEPRECATED_VALUE (-1), so
        # ``init_log_std=-1.0`` would silently revert to the default in the Algorithm's copy.
        names = (*SETTINGS_KEYS, "prior_exposure_offset", "_offset_key", "learner_torch_threads")
        return super().get_state() | {name: getattr(self, name) for name in names}

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from fairrec_ray.fcpo.module import FCPOTorchRLModule

        return RLModuleSpec(module_class=FCPOTorchRLModule)

    def get_default_learner_class(self) -> type:
        from fairrec_ray.fcpo.learner import FCPOTorchLearner

        return FCPOTorchLearner


class FCPO(Algorithm):
    """EnvRunners sample one episode per user of their shard; one central learner takes a CPO step."""

    @classmethod
    def get_default_config(cls) -> FCPOConfig:
        return FCPOConfig()

    def training_step(self) -> None:
        config: FCPOConfig = self.config
        if config.fast_rollouts:
            self._sample_columns_and_update()
        else:
            self._sample_episodes_and_update()
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)

    def _sample_episodes_and_update(self) -> None:
        """RLlib's path: episodes -> learner connectors (costs from infos) -> learner."""
        config: FCPOConfig = self.config
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, runner_metrics = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                concat=True,
                sample_timeout_s=config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(runner_metrics, key=ENV_RUNNER_RESULTS)
        if not episodes:
            return
        stats = self._log_episode_stats(*episode_returns(episodes, config.gamma_c))
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            results = self.learner_group.update(
                episodes=episodes, timesteps=self._learner_timesteps(stats), num_epochs=1, minibatch_size=None
            )
        self.metrics.aggregate(results, key=LEARNER_RESULTS)

    def _sample_columns_and_update(self) -> None:
        """Columnar rollouts (``FCPOEnvRunner.sample_columns``) -> one ready train batch."""
        config: FCPOConfig = self.config
        remote = config.num_env_runners > 0
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            parts = self.env_runner_group.foreach_env_runner(
                lambda runner: runner.sample_columns(), local_env_runner=not remote
            )
        columns = merge_columns(parts)
        steps = int(columns[keys.COSTS].size)
        self.metrics.log_value((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), steps, reduce="lifetime_sum")
        stats = self._log_episode_stats(*episode_stats(columns, config.gamma_c))
        batch = MultiAgentBatch(
            {DEFAULT_MODULE_ID: SampleBatch(train_batch_columns(columns, config.gamma_c))}, env_steps=steps
        )
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            results = self.learner_group.update(
                batch=batch, timesteps=self._learner_timesteps(stats), num_epochs=1, minibatch_size=None
            )
        self.metrics.aggregate(results, key=LEARNER_RESULTS)

    def _log_episode_stats(self, reward: np.ndarray, cost: np.ndarray, cost_discounted: np.ndarray) -> dict:
        stats = {
            keys.EPISODE_REWARD_MEAN: float(reward.mean()),
            keys.EPISODE_COST_MEAN: float(cost.mean()),
            keys.EPISODE_COST_DISCOUNTED: float(cost_discounted.mean()),
            keys.COST_LIMIT: self.config.cost_limit,
            keys.NUM_EPISODES: len(reward),
        }
        for key, value in stats.items():
            self.metrics.log_value(key, value, window=1)
        return stats

    def _learner_timesteps(self, stats: dict) -> dict:
        return {
            NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0
            ),
            keys.TS_EPISODE_COST: stats[keys.EPISODE_COST_DISCOUNTED],
            keys.TS_NUM_EPISODES: stats[keys.NUM_EPISODES],
        }


def episode_returns(episodes: list, gamma_c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per RLlib episode: undiscounted reward, undiscounted cost, discounted cost (sum_t gamma_c^t c_t)."""
    from fairrec_ray.fcpo.env import INFO_COST

    rewards, costs, discounted = [], [], []
    for episode in episodes:
        c = np.array([info.get(INFO_COST, 0.0) for info in episode.get_infos()[1:]], dtype=np.float64)
        rewards.append(float(np.sum(episode.get_rewards())))
        costs.append(float(c.sum()))
        discounted.append(float(np.sum(c * gamma_c ** (episode.t_started + np.arange(len(c))))))
    return np.asarray(rewards), np.asarray(costs), np.asarray(discounted)

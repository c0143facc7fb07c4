"""FCPO on RLlib end to end: learning and a binding limit on a planted env, user shards over
EnvRunners (with a remote learner), reproducibility, the CLI and its checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fcpo_fixtures import planted_env_data

from fairrec_ray.fcpo import keys
from fairrec_ray.fcpo.cpo import CPOCase

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def _config(data, alpha, num_env_runners=0, fast_rollouts=True, **training):
    from fairrec_ray.fcpo.algorithm import FCPOConfig

    # The planted data has no exposure coordinate; its dynamics were tuned at the earlier noise level.
    training = {"feasible_init": False, "init_log_std": -0.5, **training}
    return (
        FCPOConfig()
        .recommendation(data=data, top_k=4, horizon=3, fast_rollouts=fast_rollouts)
        .training(alpha=alpha, gamma_c=1.0, max_kl=0.05, critic_iters=10, **training)
        .env_runners(num_env_runners=num_env_runners)
        .debugging(seed=0, log_level="ERROR")
    )


def _train(config, iterations):
    algo = config.build_algo()
    try:
        return [algo.train() for _ in range(iterations)]
    finally:
        algo.stop()


@pytest.mark.parametrize("fast_rollouts", [True, False], ids=["columnar-rollouts", "rllib-episodes"])
def test_both_sampling_paths_improve_reward(fast_rollouts):
    data = planted_env_data(n_users=256)
    results = _train(_config(data, alpha=None, fast_rollouts=fast_rollouts), 4)  # 3 CPO updates in between
    rewards = [r[keys.EPISODE_REWARD_MEAN] for r in results]
    assert rewards[-1] > rewards[0] + 0.3, rewards
    learner = results[-1]["learners"]["default_policy"]
    assert int(learner[keys.CPO_CASE]) == CPOCase.UNCONSTRAINED
    assert learner[keys.CPO_KL] <= 0.05 + 1e-6
    assert results[-1][keys.NUM_EPISODES] == 256


def test_binding_limit_is_kept_where_the_unconstrained_policy_exceeds_it():
    """The reward-optimal policy shows all 12 popular positives; alpha = 0.25 allows 2.4 per
    episode. Unconstrained, the cost climbs far above d; constrained (starting at the same policy,
    0.4), CPO crosses d, leaves the violated case and keeps the sampled cost at d. With a line
    search that also demanded reward improvement when c > 0, 45 of 59 violated-case steps were
    rejected and the last 20 iterations averaged ~2.55 > d."""
    data = planted_env_data(n_users=256)
    d = _config(data, alpha=0.25).cost_limit
    assert d == pytest.approx(0.2 * 4 * 3)
    free = [r[keys.EPISODE_COST_DISCOUNTED] for r in _train(_config(data, alpha=None), 30)]
    assert free[0] < d and np.mean(free[-5:]) > d + 2.0, free
    results = _train(_config(data, alpha=0.25), 60)
    costs = np.array([r[keys.EPISODE_COST_DISCOUNTED] for r in results])
    cases = [int(r["learners"]["default_policy"][keys.CPO_CASE]) for r in results[1:]]
    assert costs.max() > d and CPOCase.VIOLATED_RECOVERABLE in cases  # the limit did bind
    assert costs[-20:].mean() <= d + 0.04, costs[-20:]
    assert results[-1][keys.EPISODE_REWARD_MEAN] > results[0][keys.EPISODE_REWARD_MEAN] + 2.0


def test_feasible_init_starts_the_sampling_policy_under_the_limit():
    data = planted_env_data(n_users=256, exposure_scale=1.0)
    start = {}
    for feasible in (False, True):
        config = _config(data, alpha=0.1, feasible_init=feasible, feasible_margin=0.05)
        start[feasible] = _train(config, 1)[0][keys.EPISODE_COST_DISCOUNTED]
    d = config.cost_limit
    config.validate()  # build_algo() validates a copy
    assert config.prior_exposure_offset < 0
    # Settings survive RLlib's config copy, even at RLlib's "deprecated" marker value -1.
    algo = _config(data, alpha=0.1, init_log_std=-1.0).build_algo()
    try:
        assert algo.config.init_log_std == -1.0
        module = algo.learner_group._learner.module["default_policy"]
        assert float(module.log_std[0]) == -1.0
    finally:
        algo.stop()
    assert start[False] > d and 0.85 * d <= start[True] <= d, (start, d)


@pytest.mark.slow
def test_cli_writes_results_and_a_checkpoint_that_restores_the_policy(tmp_path):
    """The CLI at its defaults (EnvRunners resolved from the test Ray's 4 CPUs: 2), validation
    during training, test once at the end; the checkpoint restores the exact final policy."""
    from fairrec_ray.fcpo.algorithm import FCPO
    from fairrec_ray.fcpo.evaluation import learner_policy, policy_metrics
    from fairrec_ray.fcpo.job import RESULTS_FILE, FCPOJobConfig, build_job_env_data
    from fairrec_ray.train_fcpo import main

    out = tmp_path / "run"
    argv = [
        "--dataset", "synthetic", "--synthetic-users", "60", "--synthetic-items", "120", "--alpha", "0.5",
        "--iterations", "2", "--eval-every", "1", "--top-k", "4", "--horizon", "3", "--emb-dim", "8",
        "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / RESULTS_FILE).read_text())
    assert len(results["history"]) == 2
    assert [e["iteration"] for e in results["evaluations"]] == [1, 2]  # validation only
    assert results["evaluations"][-1]["recall@10"] == results["final_valid"]["recall@10"]
    for part in ("final_valid", "final_test"):
        for key in ("recall@10", "ndcg@10", "gini", "popularity_rate", "cost_discounted", "violation_rate"):
            assert isinstance(results[part][key], float), (part, key)
    assert results["cost_limit"] == pytest.approx(0.5 / 1.5 * 4 * sum(0.99**t for t in range(3)))
    assert results["num_env_runners"] == 2  # the default on a Ray with >= 4 free CPUs (the test Ray has 4)
    assert results["prior_exposure_offset"] <= 0.0
    job = FCPOJobConfig(**{k: v for k, v in results["config"].items()})
    data = build_job_env_data(job)
    restored = FCPO.from_checkpoint(results["checkpoint"])
    try:
        assert restored.config.cost_limit == pytest.approx(results["cost_limit"])
        again = policy_metrics(
            data, learner_policy(restored), 4, 3, results["cost_limit"], 0.99, at=(10, 12), split="test"
        )
        assert again == pytest.approx(results["final_test"])
    finally:
        restored.stop()


def test_cli_rejects_bad_alpha_before_writing(tmp_path):
    from fairrec_ray.errors import ConfigError
    from fairrec_ray.train_fcpo import main

    with pytest.raises(ConfigError, match=r"alpha: got -1.0; expected a finite number > 0"):
        main(["--alpha", "-1", "--output", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_seeded_runs_are_reproducible():
    from ray.rllib.core import DEFAULT_MODULE_ID

    data = planted_env_data(n_users=64)
    runs = []
    for _ in range(2):
        algo = _config(data, alpha=0.25).build_algo()
        try:
            results = [algo.train() for _ in range(2)]
            weights = algo.learner_group.get_weights()[DEFAULT_MODULE_ID]
        finally:
            algo.stop()
        learner = results[-1]["learners"]["default_policy"]
        runs.append(
            (
                [(r[keys.EPISODE_REWARD_MEAN], r[keys.EPISODE_COST_DISCOUNTED]) for r in results],
                (learner[keys.CPO_KL], learner[keys.COST_SURROGATE_CHANGE], learner[keys.REWARD_SURROGATE_GAIN]),
                {name: np.asarray(value) for name, value in weights.items()},
            )
        )
    (returns_a, step_a, weights_a), (returns_b, step_b, weights_b) = runs
    assert returns_a == returns_b
    assert step_a == step_b
    for name in weights_a:
        np.testing.assert_array_equal(weights_a[name], weights_b[name], err_msg=name)


def test_two_env_runners_shard_the_users_and_a_remote_learner_trains():
    """Each of 2 EnvRunners samples its own half of the users once per iteration, on both sampling
    paths; the union is every training user. (Before: each runner drew 32 of its own seeded
    permutation, 47 distinct users of 64.) The CPO step runs in a remote learner."""
    from fairrec_ray.fcpo.env import INFO_USER

    data = planted_env_data(n_users=65)  # shards of 33 and 32
    algo = _config(data, alpha=0.5, num_env_runners=2).learners(num_learners=1).build_algo()
    try:
        first, second = algo.train(), algo.train()
        runners = algo.env_runner_group
        columnar = runners.foreach_env_runner(lambda r: r.sample_columns()[keys.USERS], local_env_runner=False)
        episodes = runners.foreach_env_runner(
            lambda r: [int(e.get_infos()[0][INFO_USER]) for e in r.sample()], local_env_runner=False
        )
    finally:
        algo.stop()
    for shards in (columnar, episodes):
        a, b = (np.asarray(s) for s in shards)
        assert len(a) == len(set(a)) == 33 and len(b) == len(set(b)) == 32  # each user once
        assert not set(a) & set(b) and set(a) | set(b) == set(range(65))
    assert first[keys.NUM_EPISODES] == second[keys.NUM_EPISODES] == 65
    learner = second["learners"]["default_policy"]
    assert learner[keys.CPO_KL] <= 0.05 + 1e-6 and int(learner[keys.CPO_CASE]) in {c.value for c in CPOCase}
    assert np.isfinite(second[keys.EPISODE_REWARD_MEAN])

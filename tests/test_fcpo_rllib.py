"""FCPO on RLlib end to end: learning on a planted env, checkpoint/restore, EnvRunners, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fcpo_fixtures import planted_env_data

from fairrec_ray.fcpo import keys
from fairrec_ray.fcpo.cpo import CPOCase

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def _config(data, alpha, num_env_runners=0, fast_rollouts=True, **training):
    from fairrec_ray.fcpo.config import FCPOConfig

    return (
        FCPOConfig()
        .recommendation(data=data, top_k=4, horizon=3, fast_rollouts=fast_rollouts)
        .training(alpha=alpha, gamma_c=1.0, max_kl=0.05, critic_iters=10, **training)
        .env_runners(num_env_runners=num_env_runners)
        .debugging(seed=0, log_level="ERROR")
    )


@pytest.mark.parametrize("fast_rollouts", [True, False], ids=["columnar-rollouts", "rllib-episodes"])
def test_fcpo_improves_reward_and_keeps_binding_cost_limit(fast_rollouts):
    data = planted_env_data(n_users=256)
    config = _config(data, alpha=0.25, fast_rollouts=fast_rollouts)
    d = config.cost_limit
    assert d == pytest.approx(0.2 * 4 * 3)
    # The reward-optimal policy recommends all 12 popular positives: the limit binds.
    assert data.popular.sum() > d
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(4)]  # sample-before-update: 3 CPO updates in between
    finally:
        algo.stop()
    rewards = [r[keys.EPISODE_REWARD_MEAN] for r in results]
    costs = [r[keys.EPISODE_COST_DISCOUNTED] for r in results]
    assert rewards[-1] > rewards[0] + 0.3, rewards
    assert max(costs) <= d + 0.3, (costs, d)
    learner = results[-1]["learners"]["default_policy"]
    assert int(learner[keys.CPO_CASE]) in {c.value for c in CPOCase}
    assert learner[keys.CPO_KL] <= 0.05 + 1e-6
    assert results[-1][keys.NUM_EPISODES] == 256


def test_checkpoint_round_trip_with_one_env_runner(tmp_path):
    from ray.rllib.core import DEFAULT_MODULE_ID

    from fairrec_ray.fcpo.algorithm import FCPO
    from fairrec_ray.fcpo.evaluation import algo_policy

    data = planted_env_data(n_users=64)
    algo = _config(data, alpha=0.5, num_env_runners=1).build_algo()
    restored = None
    try:
        result = algo.train()
        assert result[keys.NUM_EPISODES] == 64
        path = algo.save_to_path(tmp_path / "ckpt")
        restored = FCPO.from_checkpoint(path)
        before = algo.learner_group.get_weights()[DEFAULT_MODULE_ID]
        after = restored.learner_group.get_weights()[DEFAULT_MODULE_ID]
        assert before.keys() == after.keys()
        for name in before:
            np.testing.assert_allclose(np.asarray(before[name]), np.asarray(after[name]))
        obs = np.random.default_rng(0).normal(size=(5, data.n_start * data.dim + 1)).astype(np.float32)
        np.testing.assert_allclose(algo_policy(algo)(obs), algo_policy(restored)(obs), rtol=1e-6)
        assert restored.config.cost_limit == algo.config.cost_limit
        assert restored.train()[keys.NUM_EPISODES] == 64  # and it keeps training
    finally:
        algo.stop()
        if restored is not None:
            restored.stop()


@pytest.mark.slow
def test_cli_writes_results_json(tmp_path):
    from fairrec_ray.train_fcpo import RESULTS_FILE, main

    out = tmp_path / "run"
    code = main(
        [
            "--dataset", "synthetic", "--synthetic-users", "60", "--synthetic-items", "120", "--alpha", "0.5",
            "--iterations", "2", "--eval-every", "1", "--top-k", "4", "--horizon", "3", "--emb-dim", "8",
            "--output", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / RESULTS_FILE).read_text())
    assert len(results["history"]) == 2
    assert [e["iteration"] for e in results["evaluations"]] == [1, 2]
    final = results["final_test"]
    for key in ("recall@10", "precision@10", "f1@10", "ndcg@10", "gini", "popularity_rate", "cost_discounted"):
        assert key in final
    assert results["cost_limit"] == pytest.approx(0.5 / 1.5 * 4 * sum(0.99**t for t in range(3)))
    assert (out / "checkpoint").is_dir()


def test_cli_rejects_bad_alpha_before_writing(tmp_path):
    from fairrec_ray.errors import ConfigError
    from fairrec_ray.train_fcpo import main

    with pytest.raises(ConfigError, match=r"alpha: got -1.0; expected a number > 0"):
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


def test_remote_learner_and_two_env_runners_train_on_every_user():
    """num_learners=1 (the CPO step in a learner actor) with 2 EnvRunners sampling halves of the users."""
    data = planted_env_data(n_users=64)
    algo = _config(data, alpha=0.5, num_env_runners=2).learners(num_learners=1).build_algo()
    try:
        first, second = algo.train(), algo.train()
    finally:
        algo.stop()
    assert first[keys.NUM_EPISODES] == second[keys.NUM_EPISODES] == 64
    learner = second["learners"]["default_policy"]
    assert learner[keys.CPO_KL] <= 0.05 + 1e-6 and int(learner[keys.CPO_CASE]) in {c.value for c in CPOCase}
    assert np.isfinite(second[keys.EPISODE_REWARD_MEAN])

"""FCPO env, connectors, surrogates and config checks (no Ray instance needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fcpo_fixtures import planted_env_data

from fairrec_ray.errors import ConfigError
from fairrec_ray.fcpo import keys
from fairrec_ray.fcpo.env import INFO_COST, RecVectorEnv, check_env_sizes
from fairrec_ray.fcpo.evaluation import policy_metrics
from fairrec_ray.fcpo.surrogates import gaussian_kl, gaussian_log_prob


def _run_episode(env: RecVectorEnv, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    env.reset(seed=0)
    recs, rewards, costs = [], [], []
    for _ in range(env.horizon):
        _, r, _, _, info = env.step(rng.normal(size=(env.num_envs, env.data.dim)).astype(np.float32))
        recs.append(env.last_recommended.numpy().copy())
        rewards.append(r)
        costs.append(info[INFO_COST])
    return np.concatenate(recs, axis=1), np.stack(rewards, 1), np.stack(costs, 1)


def test_no_item_recommended_twice_and_start_state_masked():
    data = planted_env_data(n_users=32)
    env = RecVectorEnv(data, num_envs=32, top_k=4, horizon=8)
    recs, _, _ = _run_episode(env, np.random.default_rng(1))
    rows = env.rows
    for u in range(env.num_envs):
        assert len(set(recs[u])) == recs.shape[1]
        assert not set(recs[u]) & set(data.train_start[rows[u]])


def test_cost_counts_popular_items_and_reward_pays_once():
    data = planted_env_data(n_users=16)
    env = RecVectorEnv(data, num_envs=16, top_k=5, horizon=6)
    recs, rewards, costs = _run_episode(env, np.random.default_rng(2))
    np.testing.assert_allclose(costs.sum(1), data.popular[recs].sum(1))
    positives = set(range(18))  # planted: items 0..17 are every user's held-out positives
    hits = np.array([len(positives & set(row)) for row in recs])
    np.testing.assert_allclose(rewards.sum(1), hits)
    assert (rewards.sum(1) <= len(positives)).all()


def test_hit_joins_state_window_and_obs_has_time():
    data = planted_env_data(n_users=4)
    env = RecVectorEnv(data, num_envs=4, top_k=1, horizon=3)
    env.reset(options={"users": np.arange(4)})
    w = np.tile(np.array([[0.0, 1.0, 0.0, 0.0]], np.float32), (4, 1))  # points at the axis-1 positives
    obs, reward, *_ = env.step(w)
    item = env.last_recommended[:, 0].numpy()
    assert (reward == 1).all() and (item >= 12).all() and (item < 18).all()
    np.testing.assert_array_equal(env.window[:, -1].numpy(), item)
    np.testing.assert_allclose(obs[:, -5:-1], data.item_emb[item])
    np.testing.assert_allclose(obs[:, -1], 1 / 3)


def test_vector_autoreset_next_step():
    data = planted_env_data(n_users=8)
    env = RecVectorEnv(data, num_envs=8, top_k=2, horizon=2)
    env.reset(seed=0)
    zeros = np.zeros((8, 4), np.float32)
    env.step(zeros)
    _, _, terminated, _, _ = env.step(zeros)
    assert terminated.all()
    obs, reward, terminated, truncated, _ = env.step(zeros)  # reset step
    assert not terminated.any() and not truncated.any() and (reward == 0).all()
    np.testing.assert_allclose(obs[:, -1], 0.0)


def test_recall_denominator_counts_positives_before_rollout():
    data = planted_env_data(n_users=8)

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.tile(np.array([[1.0, 1.0, 0.0, 0.0]], np.float32), (len(obs), 1))

    metrics = policy_metrics(data, policy, top_k=6, horizon=3, at=(6, 18))
    # 18 positives before the rollout; the 18 recommended items are exactly them.
    assert metrics["recall@18"] == pytest.approx(1.0)
    assert metrics["precision@6"] == pytest.approx(1.0)
    assert metrics["recall@6"] == pytest.approx(6 / 18)
    assert metrics["cost"] == pytest.approx(12.0)  # all 12 popular items were shown once


def test_exposure_is_amortised_over_the_episode_slates():
    """2 users, K = 2, T = 2 over 8 items (6 and 7 never shown); popular = items 0, 1."""
    from types import SimpleNamespace

    from fairrec_ray.fcpo.evaluation import rollout_metrics

    data = SimpleNamespace(
        n_items=8, popular=np.array([1, 1, 0, 0, 0, 0, 0, 0], bool), train_item_counts=lambda: np.arange(8)[::-1]
    )
    rec = np.array([[0, 1, 2, 3], [1, 0, 4, 5]])
    out = {"recommended": rec, "relevant": np.zeros((2, 8), bool), "n_relevant": np.array([1, 1]),
           "reward": np.zeros(2), "cost": np.full(2, 2.0), "cost_discounted": np.full(2, 2.0)}  # fmt: skip
    m = rollout_metrics(out, data, 3.0, (4,), top_k=2)
    d1 = 1 / math.log2(3)
    # per-slate ranks: items 0, 1 get 1 + d1 each; 2 and 4 get 1; 3 and 5 get d1
    assert m["popular_exposure_share"] == pytest.approx(0.5)
    assert m["popular_exposure_ratio"] == pytest.approx((1 + d1) / ((2 + 2 * d1) / 6))
    assert m["aplt"] == pytest.approx(0.5) and m["item_coverage"] == pytest.approx(6 / 8)
    assert m["arp"] == pytest.approx(np.mean([(7 + 6) / 2, (5 + 4) / 2, (6 + 7) / 2, (3 + 2) / 2]))
    whole = rollout_metrics(out, data, 3.0, (4,))  # one 4-item list per user: ranks 3, 4 weigh less
    assert whole["popular_exposure_share"] > m["popular_exposure_share"]


def test_bad_env_sizes_raise_clear_errors():
    with pytest.raises(ConfigError, match=r"top_k=61 > number of items 60"):
        check_env_sizes(n_items=60, n_start=5, top_k=61, horizon=1)
    with pytest.raises(ConfigError, match=r"top_k \* horizon = 60 .* lower top_k or horizon"):
        check_env_sizes(n_items=60, n_start=5, top_k=10, horizon=6)


@pytest.mark.parametrize("alpha", [0, -0.5, math.nan, math.inf])
def test_bad_alpha_raises(alpha):
    from fairrec_ray.fcpo.algorithm import FCPOConfig

    with pytest.raises(ConfigError, match=r"alpha: got .*expected a finite number > 0"):
        FCPOConfig().training(alpha=alpha)


def test_config_rejects_k_larger_than_items_and_derives_limit():
    from fairrec_ray.fcpo.algorithm import FCPOConfig

    data = planted_env_data(n_users=8)
    with pytest.raises(ConfigError, match=r"top_k=61 > number of items 60"):
        FCPOConfig().recommendation(data=data, top_k=61, horizon=1).validate()
    config = FCPOConfig().recommendation(data=data, top_k=4, horizon=3).training(alpha=0.25, gamma_c=1.0)
    assert config.cost_limit == pytest.approx(0.2 * 4 * 3)
    assert math.isinf(FCPOConfig().cost_limit)
    with pytest.raises(ConfigError, match=r"num_learners: got 2; expected 0 or 1"):
        FCPOConfig().recommendation(data=data, top_k=4, horizon=3).learners(num_learners=2).validate()
    with pytest.raises(
        ConfigError, match=r"feasible_init: got True .* exposure_feature = 0; .* or feasible_init=false"
    ):
        FCPOConfig().recommendation(data=data, top_k=4, horizon=3).training(alpha=0.5).validate()


def test_cost_connector_shifts_infos():
    from ray.rllib.connectors.learner import AddOneTsToEpisodesAndTruncate
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from fairrec_ray.fcpo.connectors import AddCostsFromInfos

    costs = [3.0, 1.0, 2.0]
    episode = SingleAgentEpisode(
        observations=[np.zeros(2, np.float32)] * 4,
        actions=[np.zeros(1, np.float32)] * 3,
        rewards=[0.0] * 3,
        infos=[{INFO_COST: 0.0}] + [{INFO_COST: c} for c in costs],
        terminated=True,
        len_lookback_buffer=0,
    ).to_numpy()
    batch: dict = {}
    shared: dict = {}
    batch = AddOneTsToEpisodesAndTruncate()(rl_module=None, batch=batch, episodes=[episode], shared_data=shared)
    batch = AddCostsFromInfos(gamma_c=0.5)(rl_module=None, batch=batch, episodes=[episode], shared_data=shared)
    (column,) = batch[keys.COSTS].values()
    (discount,) = batch[keys.COST_DISCOUNT].values()
    np.testing.assert_allclose(column, [3.0, 1.0, 2.0, 0.0])  # cost of step t from infos[t + 1]
    np.testing.assert_allclose(discount, [1.0, 0.5, 0.25, 0.0])


def test_advantages_reward_standardised_cost_only_centred():
    from fairrec_ray.fcpo.advantages import estimate_advantages

    # two 3-step episodes, zero critics, gamma = lambda = 1: advantages are the returns-to-go
    rewards = np.array([1.0, 0.0, 2.0, 0.0, 1.0, 1.0])
    costs = np.array([3.0, 1.0, 2.0, 1.0, 1.0, 0.0])
    ends = np.array([0, 0, 1, 0, 0, 1], bool)
    zeros = np.zeros(6)
    adv = estimate_advantages(rewards, costs, zeros, zeros, ends, gamma_r=1.0, gamma_c=1.0, lam=1.0)
    reward_to_go = np.array([3.0, 2.0, 2.0, 2.0, 2.0, 1.0])
    cost_to_go = np.array([6.0, 3.0, 2.0, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(adv.reward, (reward_to_go - reward_to_go.mean()) / reward_to_go.std(), rtol=1e-6)
    np.testing.assert_allclose(adv.cost, cost_to_go - cost_to_go.mean(), atol=1e-6)  # centred, not rescaled
    np.testing.assert_allclose(adv.cost_targets, cost_to_go)
    # ragged episodes (3 + 2 + 1 rows) give each episode's own returns, never crossing a boundary
    ragged = np.array([0, 0, 1, 0, 1, 1], bool)
    out = estimate_advantages(rewards, costs, zeros, zeros, ragged, gamma_r=1.0, gamma_c=1.0, lam=1.0)
    np.testing.assert_allclose(out.cost_targets, [6.0, 3.0, 2.0, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(out.reward_targets, [3.0, 2.0, 2.0, 1.0, 1.0, 1.0])


def test_gaussian_helpers_match_torch_distributions():
    torch.manual_seed(0)
    m0, m1, s0, s1 = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3) * 0.3, torch.randn(5, 3) * 0.3
    a = torch.randn(5, 3)
    d0 = torch.distributions.Normal(m0, s0.exp())
    d1 = torch.distributions.Normal(m1, s1.exp())
    torch.testing.assert_close(gaussian_log_prob(a, m0, s0), d0.log_prob(a).sum(-1))
    torch.testing.assert_close(gaussian_kl(m0, s0, m1, s1), torch.distributions.kl_divergence(d0, d1).sum(-1))


def test_exposure_coordinate_shifts_every_popular_items_score():
    import dataclasses

    from fairrec_ray.fcpo.module import ResidualActor

    data = dataclasses.replace(planted_env_data(n_users=8), exposure_scale=2.0)
    assert data.action_dim == data.dim + 1
    rows = data.scoring_matrix()
    np.testing.assert_array_equal(rows[:, :-1], data.item_emb)
    np.testing.assert_array_equal(rows[:, -1], np.where(data.popular, 2.0, 0.0))
    env = RecVectorEnv(data, num_envs=8, top_k=4, horizon=2)
    assert env.single_action_space.shape == (data.action_dim,)
    env.reset(seed=0)
    w = np.zeros((8, data.action_dim), np.float32)
    w[:, 0] = 1.0  # embedding part points at the popular items
    _, _, _, _, info = env.step(w)
    assert np.all(info[INFO_COST] == 4)  # all four picks popular
    env.reset(seed=0)
    w[:, -1] = -10.0  # offset pushes every popular item below every other
    _, _, _, _, info = env.step(w)
    assert np.all(info[INFO_COST] == 0)
    # The actor's prior starts the extra coordinate at 0 (plain MF ranking).
    query = np.eye(data.dim, dtype=np.float32)
    actor = ResidualActor(data.n_start * data.dim + 1, (8,), data.action_dim, query)
    obs = torch.randn(3, data.n_start * data.dim + 1)
    mean = actor(obs).detach()
    assert torch.all(mean[:, -1] == 0)
    torch.testing.assert_close(mean[:, :-1], obs[:, :-1].view(3, data.n_start, data.dim).sum(1))


def test_negative_exposure_feature_is_refused():
    from fairrec_ray.fcpo.job import FCPOJobConfig

    with pytest.raises(ConfigError, match=r"exposure_feature: got -1.0; expected >= 0"):
        FCPOJobConfig(exposure_feature=-1.0)


def test_policy_batch_subsample_keeps_rows_aligned():
    from fairrec_ray.fcpo.surrogates import PolicyBatch

    n = 50
    col = torch.arange(n, dtype=torch.float32)
    batch = PolicyBatch(col[:, None].repeat(1, 3), col[:, None], col, -col, col * 2, col[:, None].repeat(1, 2), 7)
    sub = batch.subsample(0.2, generator=torch.Generator().manual_seed(0))
    assert sub.obs.shape == (10, 3) and sub.num_episodes == 7
    rows = sub.obs[:, 0]
    for column in (sub.actions[:, 0], sub.reward_adv, -sub.cost_adv, sub.cost_weight / 2, sub.old_dist_inputs[:, 1]):
        torch.testing.assert_close(column, rows)
    assert len(set(rows.tolist())) == 10
    assert batch.subsample(1.0) is batch


def test_columnar_rollout_becomes_the_learner_batch_episode_by_episode():
    from ray.rllib.core.columns import Columns
    from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets

    from fairrec_ray.fcpo.advantages import episode_length, gae_targets
    from fairrec_ray.fcpo.env_runner import episode_stats, train_batch_columns

    users, horizon = 3, 4
    rng = np.random.default_rng(0)
    cols = {
        Columns.OBS: rng.normal(size=(users, horizon, 5)).astype(np.float32),
        Columns.ACTIONS: rng.normal(size=(users, horizon, 2)).astype(np.float32),
        Columns.REWARDS: rng.integers(0, 3, size=(users, horizon)).astype(np.float32),
        keys.COSTS: rng.integers(0, 4, size=(users, horizon)).astype(np.float32),
    }
    reward, cost, discounted = episode_stats(cols, gamma_c=0.5)
    np.testing.assert_allclose(reward, cols[Columns.REWARDS].sum(1))
    np.testing.assert_allclose(discounted, (cols[keys.COSTS] * 0.5 ** np.arange(horizon)).sum(1))
    batch = train_batch_columns(cols, gamma_c=0.5)
    np.testing.assert_array_equal(batch[Columns.OBS][horizon + 2], cols[Columns.OBS][1, 2])  # user 1, step 2
    np.testing.assert_array_equal(batch[keys.COSTS], cols[keys.COSTS].reshape(-1))
    np.testing.assert_allclose(batch[keys.COST_DISCOUNT][horizon : 2 * horizon], 0.5 ** np.arange(horizon))
    assert batch[Columns.TERMINATEDS].reshape(users, horizon)[:, -1].all()
    assert batch[Columns.TERMINATEDS].sum() == users and batch[Columns.LOSS_MASK].all()
    # GAE on the flat batch (RLlib's reference implementation) never crosses from one user's
    # episode into the next one's, and our vectorised GAE gives the same targets.
    values = rng.normal(size=users * horizon).astype(np.float32)
    term = batch[Columns.TERMINATEDS].astype(np.float32)
    flat = compute_value_targets(values, batch[Columns.REWARDS], term, batch[Columns.TRUNCATEDS].astype(np.float32),
                                 0.9, 0.8)  # fmt: skip
    for u in range(users):
        rows = slice(u * horizon, (u + 1) * horizon)
        done = np.zeros(horizon, np.float32)
        done[-1] = 1
        alone = compute_value_targets(
            values[rows], cols[Columns.REWARDS][u], done, np.zeros(horizon, np.float32), 0.9, 0.8
        )
        np.testing.assert_allclose(flat[rows], alone, rtol=1e-6)
    assert episode_length(batch[Columns.TERMINATEDS]) == horizon
    _, returns = gae_targets(batch[Columns.REWARDS], values, batch[Columns.TERMINATEDS], 0.9, 0.8)
    np.testing.assert_allclose(returns, flat, rtol=1e-5)


def _dataset(sequences: dict[int, list[tuple[int, float]]], n_items: int):
    """Users -> [(item, rating)] in time order."""
    import pandas as pd

    from fairrec_ray.data import RecDataset

    rows = [(u, i, r, k) for u, seq in sequences.items() for k, (i, r) in enumerate(seq)]
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    users = pd.DataFrame({"user_idx": range(len(sequences)), "raw_id": [str(u) for u in sequences], "gender": 0})
    items = pd.DataFrame(
        {"item_idx": range(n_items), "raw_id": [str(i) for i in range(n_items)], "title": "", "genres": ""}
    )
    return RecDataset("toy", inter, users, items, {"gender": ("F", "M")}).validate()


def test_validation_part_comes_from_the_end_of_train_and_each_period_masks_its_past():
    from fairrec_ray.fcpo.env_data import build_env_data
    from fairrec_ray.fcpo.settings import EnvDataOptions

    seq = [(i, 5.0 if i % 4 else 2.0) for i in range(1, 12)]  # positives 1 2 3 5 6 7 9 10 11
    ds = _dataset({0: seq, 1: [(i, 5.0) for i in (12, 13, 1, 2, 3, 4, 5)]}, n_items=14)
    options = EnvDataOptions(valid_share=0.25, emb_dim=2, exposure_feature=0.0)
    data = build_env_data(ds, options)
    # user 0: rest = 7 9 10 11 -> train 7 9 | valid 10 | test 11 (the test part as without validation)
    assert data.train_positives.rows_of(np.array([0]))[1].tolist() == [7, 9]
    assert data.valid_positives.rows_of(np.array([0]))[1].tolist() == [10]
    assert data.test_positives.rows_of(np.array([0]))[1].tolist() == [11]
    assert data.valid_start[0].tolist() == [3, 5, 6, 7, 9] and data.test_start[0].tolist() == [5, 6, 7, 9, 10]
    assert data.eval_users("valid").tolist() == [0]  # user 1 (2 later positives) has no validation item
    for split, consumed in (("valid", {1, 2, 3, 5, 6, 7, 9}), ("test", {1, 2, 3, 5, 6, 7, 9, 10})):
        env = RecVectorEnv(data, num_envs=1, top_k=1, horizon=1, split=split)
        env.reset(options={"users": np.array([0])})
        assert set(np.flatnonzero(env.shown[0].numpy())) == consumed, split
    without = build_env_data(ds, EnvDataOptions(valid_share=0.0, emb_dim=2, exposure_feature=0.0))
    assert without.test_start[0].tolist() == [5, 6, 7, 9, 10] and without.valid_start is None
    assert without.train_positives.rows_of(np.array([0]))[1].tolist() == [7, 9, 10]
    with pytest.raises(ConfigError, match=r"split: got 'valid' but the env data has no validation part"):
        RecVectorEnv(without, num_envs=1, top_k=1, horizon=1, split="valid")


def test_every_fcpo_config_knob_is_a_job_key_with_one_default_and_rule():
    import inspect

    from fairrec_ray.config import build_config
    from fairrec_ray.fcpo.algorithm import FCPOConfig
    from fairrec_ray.fcpo.job import FCPOJobConfig
    from fairrec_ray.fcpo.settings import SETTINGS_KEYS

    training = set(inspect.signature(FCPOConfig.training).parameters) - {"self", "kwargs"}
    recommendation = set(inspect.signature(FCPOConfig.recommendation).parameters) - {"self", "data"}
    assert training | recommendation == set(SETTINGS_KEYS)
    job, config = FCPOJobConfig(), FCPOConfig()
    assert {key: getattr(job, key) for key in SETTINGS_KEYS} == {key: getattr(config, key) for key in SETTINGS_KEYS}
    given = {"line_search_steps": "7", "line_search_decay": 0.5, "actor_prior": "none", "fast_rollouts": "false",
             "critic_minibatch_size": "none", "feasible_margin": 0.1}  # fmt: skip
    job = build_config(FCPOJobConfig, given, "sweep trial")
    assert (job.line_search_steps, job.actor_prior, job.fast_rollouts, job.critic_minibatch_size) == (
        7,
        "none",
        False,
        None,
    )
    with pytest.raises(ConfigError, match=r"sweep trial: line_search_decay: got 1.5; expected in \(0, 1\)"):
        build_config(FCPOJobConfig, {"line_search_decay": 1.5}, "sweep trial")
    with pytest.raises(ConfigError, match=r"^line_search_decay: got 1.5; expected in \(0, 1\)"):
        FCPOConfig().training(line_search_decay=1.5)


def test_one_alpha_rule_with_one_error_everywhere():
    from fairrec_ray.fcpo.algorithm import FCPOConfig
    from fairrec_ray.fcpo.cpo import cost_limit_from_alpha
    from fairrec_ray.fcpo.job import FCPOJobConfig

    messages = set()
    for make in (
        lambda: FCPOJobConfig(alpha=-1.0),
        lambda: FCPOConfig().training(alpha=-1.0),
        lambda: cost_limit_from_alpha(-1.0, k=10, horizon=10),
    ):
        with pytest.raises(ConfigError) as exc:
            make()
        messages.add(str(exc.value))
    assert messages == {
        "alpha: got -1.0; expected a finite number > 0 (popular share <= alpha/(1+alpha)), or none for no constraint"
    }


def test_shards_cover_every_user_once():
    from fairrec_ray.fcpo.env_runner import shard_users

    for n_users, runners in ((64, 2), (65, 2), (10, 3), (7, 7)):
        shards = [shard_users(n_users, runners, i) for i in range(1, runners + 1)]
        assert sorted(np.concatenate(shards).tolist()) == list(range(n_users))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard_users(5, 0, 0).tolist() == list(range(5))  # the local runner without remote ones


def test_feasible_prior_offset_meets_the_target_from_the_safe_side():
    from fairrec_ray.fcpo.embeddings import fold_in_query
    from fairrec_ray.fcpo.module import ResidualActor
    from fairrec_ray.fcpo.prior import calibrate_exposure_offset, prior_mean, sampled_episode_cost

    data = planted_env_data(n_users=128, exposure_scale=1.0)
    query = fold_in_query(data.item_emb, data.mf_reg, data.train_start)
    kwargs = {"top_k": 4, "horizon": 3, "gamma_c": 1.0, "log_std": -0.5}
    start = sampled_episode_cost(data, query, 0.0, **kwargs)
    target = 0.5 * start
    offset = calibrate_exposure_offset(data, query, target, **kwargs)
    assert offset < 0
    assert target - 0.05 <= sampled_episode_cost(data, query, offset, **kwargs) <= target
    assert calibrate_exposure_offset(data, query, 2 * start, **kwargs) == 0.0  # the prior already meets it
    # prior_mean is the actor the module builds with that offset
    obs_dim = data.n_start * data.dim + 1
    actor = ResidualActor(obs_dim, (8,), data.action_dim, query, exposure_offset=offset)
    obs = torch.randn(6, obs_dim)
    torch.testing.assert_close(actor(obs), prior_mean(obs, torch.from_numpy(query), data.action_dim, offset))


def test_default_env_runners_need_free_cores_besides_the_central_learner():
    from fairrec_ray.fcpo.job import FCPOJobConfig, default_env_runners

    assert FCPOJobConfig().num_env_runners is None  # resolved from the Ray the job runs on
    assert [default_env_runners(cpus) for cpus in (1, 2, 3, 4, 16)] == [0, 0, 0, 2, 2]

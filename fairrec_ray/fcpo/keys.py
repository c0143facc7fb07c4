"""Result and batch keys shared by the FCPO code, the CLI and the tests (one spelling each)."""

# Learner results, logged once per update under (module_id, KEY).
CPO_CASE = "cpo_case"  # int value of fcpo.cpo.CPOCase
CPO_KL = "mean_kl"  # measured KL of the accepted step
CPO_STEP_FRACTION = "step_fraction"  # accepted fraction of the full step (0 = rejected)
CPO_ACCEPTED = "step_accepted"
CPO_C = "constraint_c"  # c = J_C - (1 - cost_margin) * d (discounted, per episode)
CPO_NU = "cpo_nu"
CPO_LAM = "cpo_lam"
REWARD_SURROGATE_GAIN = "reward_surrogate_gain"
COST_SURROGATE_CHANGE = "cost_surrogate_change"
CRITIC_LOSS = "critic_loss"
POLICY_STD = "policy_std"

# training_step results (top level of the Algorithm's result dict).
EPISODE_REWARD_MEAN = "fcpo_episode_reward_mean"  # undiscounted
EPISODE_COST_MEAN = "fcpo_episode_cost_mean"  # undiscounted
EPISODE_COST_DISCOUNTED = "fcpo_episode_cost_discounted"  # J_C, what the constraint uses
COST_LIMIT = "fcpo_cost_limit"  # d (discounted, per episode); inf when unconstrained
NUM_EPISODES = "fcpo_num_episodes"

# Extra scalars for the learner: travel in `timesteps` (kwargs of Learner.update do not reach _update).
TS_EPISODE_COST = "fcpo_ts_episode_cost_discounted"
TS_NUM_EPISODES = "fcpo_ts_num_episodes"

# Train-batch columns added by the FCPO learner connectors / the columnar rollout.
COSTS = "costs"
USERS = "users"  # user rows of a columnar rollout (one per episode)
COST_DISCOUNT = "cost_discount"  # gamma_c^t of each row (0 on the artificial bootstrap row)
COST_ADVANTAGES = "cost_advantages"
COST_VALUE_TARGETS = "cost_value_targets"

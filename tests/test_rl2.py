"""RL^2: the trial env by hand, one tied policy for all tasks, the hidden task identified
within a trial on tasks it was not trained on, adaptation over K tasks equal to one by one."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import policy
from apb_jax.baselines import rl2, stage
from apb_jax.baselines.trial_env import TrialEnv, trial_returns
from apb_jax.learners import PPOConfig, ppo
from apb_jax.tasks.probes import make_probe
from tests.conftest import assert_each_run_alone_matches

BANDIT = make_probe('bandit')          # reward = target * a, one step: the task is in the reward
TRIALS = rl2.trial_family(BANDIT, 2)
META = PPOConfig(mode='tied', policy=policy.PolicyConfig(widths=(32, 32), core_size=16),
                 value_widths=(32, 32), total_steps=32768, num_envs=16, unroll_length=16,
                 eval_every=8192, epochs=4, num_minibatches=2, lr=3e-3, gamma=0.9,
                 entropy_coef=0.0, normalize_obs=False)


def _key(i):
  return jax.random.PRNGKey(i)


# -- the trial env and its returns, by hand -------------------------------------------------
def test_trial_env_feeds_back_action_reward_and_end_and_restarts_inside_a_trial():
  env = TrialEnv(make_probe('memory').env, episodes=2)      # 2-step episodes: a trial is 4
  assert env.episode_length == 4 and env.observation_shape(None) == (1 + 1 + 2,)
  state = env.reset(_key(0), {'target': jnp.float32(0.3)})
  cue = state.pipeline_state.info['cue']
  chex.assert_trees_all_close(state.obs, jnp.array([cue, 0.0, 0.0, 0.0]))
  state = env.step(state, jnp.array([0.2]))                 # step 1 of episode 1: reward 0
  chex.assert_trees_all_close(state.obs, jnp.array([0.0, 0.2, 0.0, 0.0]))
  state = env.step(state, jnp.array([0.5 * cue]))           # episode 1 ends, reward 0 (exact)
  new_cue = state.pipeline_state.info['cue']
  chex.assert_trees_all_close(state.obs, jnp.array([new_cue, 0.5 * cue, 0.0, 1.0]))
  assert float(state.done) == 0 and int(state.info['episode']) == 1   # the trial goes on
  assert int(state.pipeline_state.info['steps']) == 0                 # restarted inside
  state = env.step(state, jnp.array([0.0]))
  state = env.step(state, jnp.array([1.0]))                 # episode 2 ends: the trial ends
  np.testing.assert_allclose(state.reward, -(1.0 - 0.5 * new_cue) ** 2, rtol=1e-6)
  assert float(state.done) == 1 and float(state.info['truncation']) == 0   # a true end
  assert state.obs[-1] == 1.0


def test_trial_returns_split_a_trial_by_episode():
  env = TrialEnv(BANDIT.env, episodes=3)
  target = jnp.float32(0.4)

  def act(obs, key, carry):             # plays -1, then the sign the reward showed, then 0.5
    del key
    action = jnp.where(carry == 0, -1.0, jnp.where(carry == 1, -jnp.sign(obs[:, 2]), 0.5))
    return action[:, None], carry + 1

  returns = trial_returns(env, act, _key(1), {'target': target}, 5, jnp.zeros(5))
  np.testing.assert_allclose(returns, [-0.4, 0.4, 0.2], rtol=1e-6)


def test_curve_value_is_the_episode_the_budget_allows():
  per_episode = np.array([[1.0, 2.0, 3.0]])
  curves = stage.value_at_budget(per_episode, np.array([0, 100, 199, 200, 450, 10_000]), 200)
  np.testing.assert_array_equal(curves, [[1.0, 1.0, 1.0, 2.0, 3.0, 3.0]])


# -- one tied policy; RL^2 learns to identify the task -----------------------------------------
@pytest.fixture(scope='module')
def meta_trained():
  k = 32
  tasks = TRIALS.sample(_key(0), k, 'train')
  params = stage.tied_params(_key(1), TRIALS, META.policy, k)
  result = ppo.make_train(META, TRIALS).train(_key(2), tasks, params, show_progress=False)
  return params, result


def test_tied_mode_moves_one_policy_for_all_tasks(meta_trained):
  params, result = meta_trained
  actor = result.state.agent.actor
  for leaf in jax.tree.leaves(actor):       # 32 tasks, 32 copies: all equal, bit for bit
    np.testing.assert_array_equal(leaf, np.broadcast_to(leaf[:1], leaf.shape))
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a[0] - b[0]))),
                       actor['adapters'], params['adapters'])
  assert min(jax.tree.leaves(moved)) > 0, moved


def test_rl2_identifies_a_new_task_from_the_first_episodes_reward(meta_trained):
  """test_id tasks were not trained on. Episode 1 cannot know the sign of the target (its
  expected return over tasks is 0 for any action); episode 2 must earn |target|."""
  _, result = meta_trained
  first = lambda tree: jax.tree.map(lambda x: x[0], tree)   # noqa: E731
  trained = {'actor': first(result.state.agent.actor),
             'obs_stats': first(result.state.agent.obs_stats)}
  tasks = TRIALS.sample(_key(5), 16, 'test_id')
  per_episode = np.asarray(rl2.episode_returns(trained, TRIALS, META, _key(6), tasks, 4))
  optimal = float(np.mean(np.abs(tasks['target'])))
  ep1, ep2 = per_episode.mean(axis=0)
  assert ep2 >= 0.9 * optimal, (ep1, ep2, optimal)           # within 10% of optimal
  assert ep2 - ep1 > 0.5 * optimal, (ep1, ep2, optimal)      # learned within the trial


def test_adaptation_over_k_tasks_equals_each_task_alone(meta_trained):
  _, result = meta_trained
  trained = rl2._first(result.state)
  tasks = TRIALS.sample(_key(7), 3, 'test_ood')
  batched = rl2.episode_returns(trained, TRIALS, META, _key(8), tasks, 2)
  assert_each_run_alone_matches(
      batched, lambda key, task: rl2.run_trials(trained, TRIALS, META, key, task, 2),
      _key(8), tasks)


def test_stage_rule_on_the_host_loop_reads_each_run_trials_at_the_budget(meta_trained):
  """RL^2's adaptation rule on the shared host loop (chunks of 3 env steps, one update per
  1-step episode of a 2-episode trial): the curve at env step s is the return of episode
  min(s, 1) of the run's own trials, the trials `episode_returns` plays with the same keys."""
  _, result = meta_trained
  trained = rl2._first(result.state)
  tasks = TRIALS.sample(_key(11), 3, 'test_id')
  config = stage.AdaptLoopConfig(algo='rl2', total_steps=6, eval_every=3, steps_per_update=1)
  rule = rl2.adaptation(TRIALS, META, 4)
  out = stage.AdaptLoop(config, BANDIT, rule).train(_key(12), tasks, trained, show_progress=False)
  per_episode = np.asarray(rl2.episode_returns(trained, TRIALS, META, _key(12), tasks, 4))
  np.testing.assert_allclose(out.curves, stage.value_at_budget(per_episode, out.steps, 1),
                             rtol=1e-6, atol=1e-6)
  assert not np.allclose(per_episode[:, 0], per_episode[:, 1])   # two episodes, two values

"""MAML (ProMP): returns and the linear baseline by hand, post-update beating pre-update on
unseen tasks, and adaptation over K tasks equal to one by one."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import claims, policy
from apb_jax.baselines import maml, pg, stage
from apb_jax.tasks.probes import make_probe
from tests.conftest import assert_each_run_alone_matches

BANDIT = make_probe('bandit')          # reward = target * a: one inner step can find the sign
N = 32
CONFIG = maml.MAMLConfig(policy=policy.PolicyConfig(widths=(32, 32)), episode_length=1,
                         total_steps=400 * 2 * N, eval_every=100 * 2 * N, num_envs=N,
                         inner_lr=0.1, lr=3e-3, normalize_obs=False)

RULE = maml.adaptation(BANDIT.env, CONFIG)


def _key(i):
  return jax.random.PRNGKey(i)


# -- the policy-gradient pieces, by hand -------------------------------------------------------
def test_returns_to_go_stop_at_each_episodes_end():
  reward = jnp.array([[1.0, 1.0], [2.0, 5.0], [4.0, 7.0]])   # [L=3, n=2]
  alive = jnp.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])     # episode 2 ended at step 1
  g = pg.returns_to_go(reward, alive, 0.5)
  np.testing.assert_allclose(g, [[1 + 0.5 * 2 + 0.25 * 4, 1 + 0.5 * 5], [2 + 0.5 * 4, 5.0],
                                 [4.0, 0.0]], rtol=1e-6)


def test_linear_baseline_fits_a_target_in_its_feature_span_and_ignores_dead_steps():
  obs = jax.random.normal(_key(0), (5, 4, 2))
  t = jnp.arange(5)[:, None] / 100.0
  target = 2.0 * obs[..., 0] - obs[..., 1] ** 2 + 3.0 * t + 1.0
  alive = jnp.ones((5, 4)).at[3:, 0].set(0.0)
  garbage = target.at[3:, 0].set(1e3)                          # dead steps must not count
  fit = pg.linear_baseline(obs, garbage, alive)
  np.testing.assert_allclose((fit * alive), (target * alive), atol=1e-2)


def test_advantages_are_normalised_over_live_steps_and_zero_after_the_end():
  batch = pg.Episodes(obs=jax.random.normal(_key(1), (4, 8, 3)), u=jnp.zeros((4, 8, 1)),
                      log_prob=jnp.zeros((4, 8)), reward=jax.random.normal(_key(2), (4, 8)),
                      alive=jnp.ones((4, 8)).at[2:, :3].set(0.0), next_obs=jnp.zeros((4, 8, 3)))
  adv = pg.advantages(batch, 0.99)
  np.testing.assert_allclose(pg.masked_mean(adv, batch.alive), 0.0, atol=1e-5)
  np.testing.assert_allclose(pg.masked_mean(adv ** 2, batch.alive), 1.0, rtol=1e-3)
  assert float(jnp.max(jnp.abs(adv * (1 - batch.alive)))) == 0.0


def test_bad_maml_budget_names_the_fix():
  with pytest.raises(ValueError, match='whole iterations of 64'):
    CONFIG.replace(eval_every=100)


# -- meta-training ------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def meta_trained():
  k = 16
  tasks = BANDIT.sample(_key(0), k, 'train')
  params = stage.tied_params(_key(1), BANDIT, CONFIG.policy, k)
  result = maml.MAMLTrainer(CONFIG, BANDIT).train(_key(2), tasks, params, show_progress=False)
  return {'meta': result.state.meta, 'obs_stats': result.state.obs_stats}, result


def test_post_update_return_beats_pre_update_on_unseen_tasks(meta_trained):
  trained, result = meta_trained
  tasks = BANDIT.sample(_key(5), 16, 'test_id')
  returns = np.asarray(stage.per_update_table(RULE, trained, _key(6), tasks, 1))
  gain = claims.paired_difference(returns[:, 1], returns[:, 0])
  assert gain['ci_low'] > 0, gain                                   # the interval excludes 0
  optimal = float(np.mean(np.abs(tasks['target'])))
  assert returns[:, 1].mean() >= 0.9 * optimal, (returns.mean(axis=0), optimal)
  # During meta-training too: the post-update episodes out-earn the pre-update ones.
  assert (result.metrics['post_return'][:, -1] > result.metrics['pre_return'][:, -1]).all()


def test_meta_parameters_are_one_copy_and_adaptation_over_k_equals_one_by_one(meta_trained):
  trained, _ = meta_trained
  chex.assert_shape(trained['meta']['adapters']['in']['kernel'], (1, 32))   # unbatched
  tasks = BANDIT.sample(_key(7), 3, 'test_ood')
  batched = stage.per_update_table(RULE, trained, _key(8), tasks, 2)
  assert_each_run_alone_matches(
      batched, lambda key, task: stage.per_update_returns(RULE, trained, key, task, 2),
      _key(8), tasks)


def test_chunked_adaptation_stage_equals_the_per_update_returns_at_the_budget(meta_trained):
  """The pipeline's stage (the shared host loop; chunks of 3 env steps that hold 1 or 2
  updates of 2 env steps each) evaluates only at the evaluation points, with the same keys:
  its curves are the per-update table read at the budget, and the backbone never moves."""
  trained, _ = meta_trained
  tasks = BANDIT.sample(_key(9), 3, 'test_id')
  config = stage.AdaptLoopConfig(algo='maml', total_steps=9, eval_every=3, steps_per_update=2)
  result = stage.AdaptLoop(config, BANDIT, RULE).train(_key(10), tasks, trained,
                                                       show_progress=False)
  table = np.asarray(stage.per_update_table(RULE, trained, _key(10), tasks, config.num_updates))
  np.testing.assert_array_equal(result.steps, [0, 3, 6, 9])
  np.testing.assert_array_equal(result.state.updates, [4, 4, 4])             # 9 // 2 updates
  np.testing.assert_allclose(result.curves, stage.value_at_budget(table, result.steps, 2),
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(table[:, 0], table[:, -1])     # the updates changed the returns
  chex.assert_trees_all_equal(result.state.trained, trained)

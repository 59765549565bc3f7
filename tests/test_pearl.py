"""PEARL: the product of Gaussians and its running sums by hand, the hidden task identified
from one episode of context on unseen tasks, one tied set of networks, K runs equal to one."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import policy
from apb_jax.baselines import encoder, pearl, stage
from apb_jax.learners import LearnerConfig
from apb_jax.tasks.probes import make_probe
from tests.conftest import assert_each_run_alone_matches

BANDIT = make_probe('bandit')      # reward = target * a: one transition shows the target's sign
SAC = LearnerConfig(mode='tied', policy=policy.PolicyConfig(widths=(32, 32)),
                    critic_widths=(32, 32), total_steps=49152, num_envs=16, eval_every=6144,
                    warmup_steps=256, batch_size=64, buffer_size=4096, actor_lr=3e-3,
                    critic_lr=3e-3, alpha_lr=3e-3, init_alpha=0.1, gamma=0.5,
                    normalize_obs=False)
# KL weight 0.001, not oyster's 0.1: a one-transition context must give a sharp posterior.
# Episode-2 return / optimal on 256 test_id tasks (the deterministic tanh policy tops out
# near 0.93): KL 0.01 at 24,576 steps 0.866, at 49,152 0.894; KL 0.001 at 49,152 0.919.
# 16 tasks vary by +-0.05 with the keys, so the test below averages 128.
CONFIG = pearl.PEARLConfig(sac=SAC, context_size=16, encoder_widths=(32, 32), encoder_lr=3e-3,
                           normalize_obs=False, kl_weight=0.001)

RULE = pearl.adaptation(BANDIT.env, CONFIG)


def _key(i):
  return jax.random.PRNGKey(i)


def test_posterior_is_the_product_of_the_factors_by_hand():
  mu = jnp.array([[1.0], [3.0], [100.0]])
  var = jnp.array([[1.0], [0.5], [1.0]])
  mean, v = encoder.posterior(mu, var, mask=jnp.array([1.0, 1.0, 0.0]))   # row 3 masked out
  np.testing.assert_allclose(v, [1.0 / (1.0 + 2.0)], rtol=1e-6)           # 1 / sum 1/var
  np.testing.assert_allclose(mean, [(1.0 + 3.0 * 2.0) / 3.0], rtol=1e-6)
  # Folding the rows in one at a time gives the same posterior; nothing in gives the prior.
  sums = encoder.empty(1)
  chex.assert_trees_all_close(encoder.from_sums(sums), (jnp.zeros(1), jnp.ones(1)))
  for i in range(2):
    sums = encoder.add(sums, mu[i:i + 1], var[i:i + 1])
  chex.assert_trees_all_close(encoder.from_sums(sums), (mean, v), rtol=1e-6)
  np.testing.assert_allclose(encoder.kl_to_prior(jnp.array([1.0, 0.0]), jnp.array([1.0, 0.5])),
                             0.5 * (1.0 + 1.0 - 1.0 - 0.0) + 0.5 * (0.5 - 1.0 - np.log(0.5)),
                             rtol=1e-6)


@pytest.fixture(scope='module')
def meta_trained():
  k = 16
  tasks = BANDIT.sample(_key(0), k, 'train')
  params = stage.tied_params(_key(1), BANDIT, SAC.policy, k, obs_size=1 + CONFIG.latent_size)
  result = pearl.PEARLTrainer(CONFIG, BANDIT).train(_key(2), tasks, params, show_progress=False)
  first = lambda tree: jax.tree.map(lambda x: x[0], tree)   # noqa: E731
  return first({'actor': result.state.agent.actor, 'encoder': result.state.encoder,
                'obs_stats': result.state.obs_stats}), result


def test_networks_are_one_tied_set_for_all_tasks(meta_trained):
  _, result = meta_trained
  for tree in (result.state.agent.actor, result.state.agent.critic, result.state.encoder,
               result.state.agent.log_alpha):
    for leaf in jax.tree.leaves(tree):
      np.testing.assert_array_equal(leaf, np.broadcast_to(leaf[:1], leaf.shape))


def test_pearl_identifies_a_new_task_from_one_episode_of_context(meta_trained):
  trained, _ = meta_trained
  tasks = BANDIT.sample(_key(5), 128, 'test_id')
  per_episode = np.asarray(stage.per_update_table(RULE, trained, _key(6),
                                                    tasks, 2)).mean(axis=0)
  optimal = float(np.mean(np.abs(tasks['target'])))
  assert per_episode[1] >= 0.9 * optimal, (per_episode, optimal)   # one transition of context
  assert per_episode[0] < 0.5 * optimal, (per_episode, optimal)    # the prior cannot know


def test_adaptation_over_k_tasks_equals_each_task_alone(meta_trained):
  trained, _ = meta_trained
  tasks = BANDIT.sample(_key(7), 3, 'test_ood')
  batched = stage.per_update_table(RULE, trained, _key(8), tasks, 2)
  assert_each_run_alone_matches(
      batched, lambda key, task: stage.per_update_returns(RULE, trained, key, task, 2),
      _key(8), tasks)

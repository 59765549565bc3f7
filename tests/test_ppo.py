"""PPO: GAE and the surrogate by hand, probe environments, the recurrent core, task vmapping,
the frozen backbone, resume and sharding."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import policy
from apb_jax.learners import LearnerConfig, PPOConfig, ppo, ppo_losses
from apb_jax.tasks.probes import make_probe

PROBE_POLICY = policy.PolicyConfig(widths=(32, 32))
PROBE = PPOConfig(
    policy=PROBE_POLICY, value_widths=(32, 32), total_steps=8192, num_envs=16,
    unroll_length=8, eval_every=2048, epochs=4, num_minibatches=4, lr=3e-3, gamma=0.5,
    entropy_coef=0.0, normalize_obs=False)
K = 3


def _key(i):
  return jax.random.PRNGKey(i)


def _init_params(k, config=PROBE_POLICY, seed=1):
  backbone = policy.init_backbone(_key(seed), config)
  adapters = jax.vmap(lambda r: policy.init_adapters(r, 1, 1, config))(
      jax.random.split(_key(seed + 1), k))
  return {'backbone': backbone, 'adapters': adapters}


def _train(kind, config, k=K):
  family = make_probe(kind)
  tasks = family.sample(_key(0), k, 'train')
  trainer = ppo.make_train(config, family)
  result = trainer.train(_key(3), tasks, _init_params(k, config.policy), show_progress=False)
  return trainer, result, tasks


def _task(state, i):
  return jax.tree.map(lambda x: x[i], state.agent)


def _value(trainer, result, i, obs):
  return trainer._value(_task(result.state, i).value, obs, jnp.zeros((obs.shape[0], 0)))


def _action(result, config, i, obs):
  actor = _task(result.state, i).actor
  out, _ = policy.apply_step(result.state.shared.backbone, actor['adapters'], obs,
                             jnp.zeros((obs.shape[0], 0)), config.policy)
  return out.action


# -- the pure pieces ---------------------------------------------------------------------
def test_gae_by_hand_bootstraps_through_truncation_not_termination():
  gamma, lam = 0.9, 0.5
  reward = jnp.array([1.0, 2.0, 3.0, 4.0])
  value = jnp.array([0.5, 1.0, 1.5, 2.0])
  value_next = jnp.array([1.0, 10.0, 2.0, 7.0])   # step 1's next obs is a truncated episode's last
  done = jnp.array([0.0, 1.0, 0.0, 1.0])
  terminal = jnp.array([0.0, 0.0, 0.0, 1.0])       # step 1 truncated, step 3 terminated
  delta = [1 + 0.9 * 1.0 - 0.5, 2 + 0.9 * 10.0 - 1.0, 3 + 0.9 * 2.0 - 1.5, 4 - 2.0]
  a3 = delta[3]
  a2 = delta[2] + gamma * lam * a3
  a1 = delta[1]                                     # the recursion stops at an episode end
  a0 = delta[0] + gamma * lam * a1
  adv = ppo_losses.gae(reward, value, value_next, terminal, done, gamma, lam)
  np.testing.assert_allclose(adv, [a0, a1, a2, a3], rtol=1e-6)
  # lambda = 1, no ends and v_next[t] = v[t + 1]: the sum telescopes to the discounted
  # return plus the discounted bootstrap, minus the first value.
  chained = jnp.concatenate([value[1:], jnp.array([7.0])])
  adv = ppo_losses.gae(reward, value, chained, 0 * done, 0 * done, gamma, 1.0)
  expected = sum(gamma ** t * r for t, r in enumerate([1, 2, 3, 4])) + gamma ** 4 * 7.0 - 0.5
  np.testing.assert_allclose(adv[0], expected, rtol=1e-6)


def test_clipped_surrogate_stops_the_gradient_outside_the_clip():
  adv = jnp.array([1.0, -1.0])
  old = jnp.zeros(2)
  grad = jax.grad(lambda lp: ppo_losses.clipped_surrogate(lp, old, adv, 0.2)[0])
  # ratio 1.5 > 1.2 with A > 0 and ratio 0.5 < 0.8 with A < 0: both clipped, no gradient.
  chex.assert_trees_all_close(grad(jnp.log(jnp.array([1.5, 0.5]))), jnp.zeros(2))
  # inside the clip: d/dlp of -mean(ratio * A) = -ratio * A / 2
  np.testing.assert_allclose(grad(jnp.zeros(2)), [-0.5, 0.5], rtol=1e-6)
  _, clip_frac = ppo_losses.clipped_surrogate(jnp.log(jnp.array([1.5, 1.0])), old, adv, 0.2)
  assert float(clip_frac) == 0.5


# -- probes --------------------------------------------------------------------------------
def test_probe_constant_reward_value_is_one():
  trainer, result, _ = _train('constant', PROBE)
  for i in range(K):
    np.testing.assert_allclose(_value(trainer, result, i, jnp.zeros((1, 1))), 1.0, atol=0.05)


def test_probe_discount_values_are_gamma_then_one():
  trainer, result, _ = _train('discount', PROBE)
  for i in range(K):
    np.testing.assert_allclose(_value(trainer, result, i, jnp.array([[0.0], [1.0]])),
                               [PROBE.gamma, 1.0], atol=0.05)


@pytest.mark.parametrize('mode', ['adapters', 'all', 'shared'])
def test_probe_each_tasks_adapters_reach_their_target(mode):
  config = PROBE.replace(mode=mode)
  _, result, tasks = _train('action', config)
  for i in range(K):
    action = _action(result, config, i, jnp.zeros((1, 1)))
    assert abs(float(action[0, 0]) - float(tasks['target'][i])) < 0.05, (i, action, tasks)
  assert result.curves[:, -1].min() > -0.01   # eval return -(a - target)^2
  chex.assert_shape(result.curves, (K, 5))


def test_memory_probe_is_solved_with_the_core_and_not_without():
  config = PROBE.replace(total_steps=16384, eval_every=4096, gamma=0.9)
  _, flat, _ = _train('memory', config, k=2)
  core = config.replace(policy=policy.PolicyConfig(widths=(32, 32), core_size=16))
  _, recurrent, _ = _train('memory', core, k=2)
  assert recurrent.curves[:, -1].min() > -0.03, recurrent.curves   # remembers the cue
  assert flat.curves[:, -1].max() < -0.2, flat.curves              # a memoryless policy cannot


# -- structure -----------------------------------------------------------------------------
CORE = PROBE.replace(policy=policy.PolicyConfig(widths=(32, 32), core_size=8), total_steps=1024,
                     eval_every=256, gamma=0.9)


@pytest.fixture(scope='module')
def memory_trainer():
  family = make_probe('memory')
  return ppo.make_train(CORE, family), family.sample(_key(0), K, 'train')


def _task_slice(state, i):
  shared = state.shared
  return jax.tree.map(lambda x: x[i:i + 1], state.replace(shared=None)).replace(shared=shared)


def test_one_chunk_over_k_tasks_equals_k_single_task_chunks(memory_trainer):
  trainer, tasks = memory_trainer
  state = trainer.init(_key(4), tasks, _init_params(K, CORE.policy))
  batched, metrics = trainer.chunk(state, 0)
  returns = trainer.evaluate(batched)
  for i in range(K):
    single, single_metrics = trainer.chunk(_task_slice(state, i), 0)
    chex.assert_trees_all_close(_task_slice(batched, i).replace(shared=None),
                                single.replace(shared=None), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], metrics),
                                jax.tree.map(lambda x: x[0], single_metrics), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returns[i], trainer.evaluate(single)[0], rtol=1e-5, atol=1e-6)


def test_resume_after_a_stop_equals_the_uninterrupted_run(memory_trainer):
  trainer, tasks = memory_trainer
  params = _init_params(K, CORE.policy)
  saved = {}

  def checkpoint(chunks_done, state, curves):
    saved[chunks_done] = (state, chunks_done, list(curves))

  full = trainer.train(_key(3), tasks, params, checkpoint_fn=checkpoint, show_progress=False)
  assert sorted(saved) == [1, 2, 3, 4]
  resumed = trainer.train(_key(3), tasks, params, resume=saved[2], show_progress=False)
  np.testing.assert_array_equal(resumed.curves, full.curves)
  chex.assert_trees_all_equal(resumed.state.agent, full.state.agent)
  chex.assert_trees_all_equal(resumed.state.carry, full.state.carry)   # the core's carry too
  chex.assert_shape(full.state.carry, (K, CORE.num_envs, 8))


@pytest.mark.parametrize('every', [1, 2])
def test_core_carry_is_kept_within_a_trial_and_zeroed_after_it(memory_trainer, every):
  """Memory probe episodes last 2 steps; a trial of `every` episodes zeroes the carry after
  every `every`-th episode end, and only there."""
  trainer, tasks = memory_trainer
  trainer = ppo.make_train(CORE.replace(core_reset_episodes=every), trainer.family)
  state = trainer.init(_key(4), tasks, _init_params(K, CORE.policy))
  rollout = jax.vmap(trainer._rollout, in_axes=(ppo.STATE_AXES, 0), out_axes=(ppo.STATE_AXES, 0),
                     axis_name=ppo.TASK_AXIS)
  _, data = rollout(state, jax.random.split(_key(5), K))     # leaves [K, T=8, E, ...]
  np.testing.assert_array_equal(data.done[0, :, 0], [0, 1] * 4)
  expected = [0, 1] * 4 if every == 1 else [0, 0, 0, 1] * 2
  np.testing.assert_array_equal(data.reset_after[:, :, :], np.broadcast_to(
      np.asarray(expected, np.float32)[None, :, None], data.reset_after.shape))
  norms = np.linalg.norm(np.asarray(data.carry_in), axis=-1)     # [K, T, E]
  starts = np.flatnonzero(np.concatenate([[1.0], expected[:-1]]))   # a fresh carry
  assert (norms[:, starts] == 0).all()
  assert (norms[:, np.setdiff1d(np.arange(8), starts)] > 0).all()   # the carry flows on


def test_adapters_mode_leaves_the_backbone_bit_for_bit_and_all_mode_moves_it():
  family = make_probe('observation')   # obs +-1, so every backbone leaf gets gradient
  tasks = family.sample(_key(0), K, 'train')
  params = _init_params(K)
  before = jax.tree.map(np.array, params['backbone'])
  config = PROBE.replace(total_steps=1024, eval_every=1024)
  result = ppo.make_train(config, family).train(_key(3), tasks, params, show_progress=False)
  chex.assert_trees_all_equal(result.state.shared.backbone, before)
  assert result.state.shared.backbone_opt == ()
  assert set(result.state.agent.actor) == {'adapters'}
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), result.state.agent.actor['adapters'],
                       params['adapters'])
  assert all(jax.tree.leaves(moved))                       # while the adapters did train
  full = ppo.make_train(config.replace(mode='all'), family).train(
      _key(3), tasks, params, show_progress=False)
  changed = jax.tree.map(lambda m, b: not np.allclose(m[0], b),
                         full.state.agent.actor['backbone'], before)
  assert all(jax.tree.leaves(changed))
  shared = ppo.make_train(config.replace(mode='shared'), family).train(
      _key(3), tasks, params, show_progress=False)
  chex.assert_trees_all_equal_shapes(shared.state.shared.backbone, before)   # one copy, moved
  assert all(jax.tree.leaves(jax.tree.map(lambda m, b: not np.allclose(m, b),
                                          shared.state.shared.backbone, before)))
  chex.assert_trees_all_equal(params['backbone'], before)


def test_bad_settings_fail_with_the_fix():
  with pytest.raises(ValueError, match='exploration=action'):
    PROBE.replace(exploration='param')
  with pytest.raises(ValueError, match='multiple of num_minibatches'):
    PROBE.replace(num_minibatches=3)
  with pytest.raises(ValueError, match='multiple of num_envs \\* unroll_length=128'):
    PROBE.replace(eval_every=1000)
  with pytest.raises(ValueError, match='num_envs=0 must be >= 1'):
    PROBE.replace(num_envs=0)
  with pytest.raises(ValueError, match="algo='ppo'"):
    LearnerConfig(policy=policy.PolicyConfig(widths=(8, 8), core_size=4))
  with pytest.raises(ValueError, match='apply_step'):
    params = policy.init_params(_key(0), 1, 1, CORE.policy)
    policy.apply(params['backbone'], params['adapters'], jnp.zeros((1, 1)), CORE.policy)


def test_task_axis_sharded_over_two_devices_equals_single_device(sharded_matches_single):
  """Mode 'shared': adapters split over devices, the backbone's mean gradient all-reduced."""
  sharded_matches_single('test_ppo')

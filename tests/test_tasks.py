"""Task families: API, splits, JSON, rewards, termination, vmapping, dynamics."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import tasks
from apb_jax.tasks import families

FAMILIES = tasks.names()
# (obs_size, action_size, dt) of the Brax robots under the mjx backend.
SIZES = {
    'cheetah_vel': (17, 6, 0.05), 'cheetah_dir': (17, 6, 0.05),
    'ant_dir': (27, 8, 0.05), 'ant_goal': (29, 8, 0.05),
    'hopper_params': (11, 3, 0.008), 'walker_params': (17, 6, 0.008),
}


def _key(i=0):
  return jax.random.PRNGKey(i)


def _one(tasks_batch, i=0):
  return jax.tree.map(lambda x: x[i], tasks_batch)


# -- API -----------------------------------------------------------------------
def test_names_lists_the_six_design_families():
  assert FAMILIES == ['cheetah_vel', 'cheetah_dir', 'ant_dir', 'ant_goal',
                      'hopper_params', 'walker_params']


@pytest.mark.parametrize('name', FAMILIES)
def test_family_reports_sizes_and_episode_length(name):
  family = tasks.make(name)
  obs_size, action_size, dt = SIZES[name]
  assert family.name == name
  assert (family.obs_size, family.action_size) == (obs_size, action_size)
  assert family.episode_length == 200
  assert family.env.dt == pytest.approx(dt)


def test_unknown_family_split_override_and_backend_raise_naming_choices():
  with pytest.raises(ValueError, match='choose one of .*ant_goal'):
    tasks.make('ant_gaol')
  with pytest.raises(ValueError, match=r"choose one of \['test_id', 'test_ood', 'train'\]"):
    tasks.make('cheetah_vel').sample(_key(), 2, 'test')
  with pytest.raises(ValueError, match='valid overrides are'):
    tasks.make('cheetah_vel', episode_len=10)
  with pytest.raises(ValueError, match='choose one of .*mjx'):
    tasks.make('cheetah_vel', backend='physx')
  with pytest.raises(ValueError, match='episode_length must be >= 1'):
    tasks.make('cheetah_vel', episode_length=0)


def test_make_returns_the_same_family_for_the_same_arguments():
  assert tasks.make('ant_goal') is tasks.make('ant_goal')
  assert tasks.make('ant_goal', episode_length=50).episode_length == 50


# -- splits ----------------------------------------------------------------------
def _angle_mod(t):
  return np.mod(np.asarray(t), 2 * math.pi)


def _check_range(name, split, sample):
  s = {k: np.asarray(v) for k, v in sample.items()}
  ood = split == 'test_ood'
  if name == 'cheetah_vel':
    lo, hi = (2.5, 3.5) if ood else (0.0, 2.0)
    assert lo <= s['velocity'].min() and s['velocity'].max() <= hi
  elif name == 'cheetah_dir':
    np.testing.assert_array_equal(s['direction'], -1.0 if ood else 1.0)
  elif name == 'ant_dir':
    lo, hi = (3 * math.pi / 4, 5 * math.pi / 4) if ood else (-math.pi / 2, math.pi / 2)
    assert lo <= s['angle'].min() and s['angle'].max() <= hi
  elif name == 'ant_goal':
    r = np.linalg.norm(s['goal'], axis=-1)
    lo, hi = (3.0, 4.0) if ood else (0.0, 2.5)
    assert lo - 1e-5 <= r.min() and r.max() <= hi + 1e-5
  else:
    for leaf in s.values():
      if ood:
        assert 2.5 <= np.abs(leaf).min() and np.abs(leaf).max() <= 3.0
        assert (leaf > 0).any() and (leaf < 0).any()   # both signs occur
      else:
        assert -2.0 <= leaf.min() and leaf.max() <= 2.0


@pytest.mark.parametrize('split', tasks.SPLITS)
@pytest.mark.parametrize('name', FAMILIES)
def test_samples_have_leading_axis_n_and_lie_in_documented_ranges(name, split):
  n = 500
  sample = tasks.make(name).sample(_key(1), n, split)
  for leaf in jax.tree.leaves(sample):
    assert leaf.shape[0] == n
    chex.assert_type(leaf, jnp.float32)
    assert np.isfinite(np.asarray(leaf)).all()
  _check_range(name, split, sample)


@pytest.mark.parametrize('name', FAMILIES)
def test_test_ood_never_overlaps_train(name):
  family = tasks.make(name)
  train = {k: np.asarray(v) for k, v in family.sample(_key(2), 2000, 'train').items()}
  ood = {k: np.asarray(v) for k, v in family.sample(_key(3), 2000, 'test_ood').items()}
  if name == 'cheetah_vel':
    assert ood['velocity'].min() > train['velocity'].max()
  elif name == 'cheetah_dir':
    assert set(ood['direction'].tolist()).isdisjoint(train['direction'].tolist())
  elif name == 'ant_dir':   # compare as headings on the circle
    train_t, ood_t = _angle_mod(train['angle']), _angle_mod(ood['angle'])
    assert ood_t.min() > math.pi / 2 and ood_t.max() < 3 * math.pi / 2
    assert ((train_t <= math.pi / 2 + 1e-6) | (train_t >= 3 * math.pi / 2 - 1e-6)).all()
  elif name == 'ant_goal':
    assert (np.linalg.norm(ood['goal'], axis=-1).min()
            > np.linalg.norm(train['goal'], axis=-1).max())
  else:
    for k in train:
      assert np.abs(ood[k]).min() > np.abs(train[k]).max()


def test_same_key_gives_same_tasks_and_different_keys_differ():
  family = tasks.make('ant_goal')
  chex.assert_trees_all_equal(family.sample(_key(5), 4, 'train'),
                              family.sample(_key(5), 4, 'train'))
  assert not np.allclose(family.sample(_key(5), 4, 'train')['goal'],
                         family.sample(_key(6), 4, 'train')['goal'])


@pytest.mark.parametrize('name', FAMILIES)
def test_task_sets_round_trip_through_json_exactly(name):
  family = tasks.make(name)
  sample = family.sample(_key(7), 5, 'test_ood')
  restored = family.tasks_from_json(family.tasks_to_json(sample, 'test_ood'))
  chex.assert_trees_all_equal(restored, sample)
  chex.assert_trees_all_equal_dtypes(restored, sample)


def test_task_set_of_another_family_is_rejected():
  text = tasks.make('cheetah_vel').tasks_to_json(
      tasks.make('cheetah_vel').sample(_key(), 2, 'train'), 'train')
  with pytest.raises(ValueError, match="make\\('cheetah_vel'\\)"):
    tasks.make('cheetah_dir').tasks_from_json(text)


# -- rewards at constructed states -------------------------------------------------
def _states(c, dq):
  """Pipeline states at init_q and at init_q + dq, at rest (no physics step)."""
  q0 = jnp.asarray(c.family.env.sys.init_q)
  qd = jnp.zeros(c.family.env.sys.qd_size())
  return c.pipeline_init(q0, qd), c.pipeline_init(q0 + dq, qd)


def _dq(family, **index_value):
  dq = np.zeros(family.env.base.sys.q_size(), np.float32)
  for i, v in index_value.items():
    dq[int(i[1:])] = v
  return jnp.asarray(dq)


# Each case: family, displacement of q between the states, task, action size,
# and the reward computed by hand from the DESIGN.md formula.
REWARD_CASES = {
    # v_x = 0.1 / 0.05 = 2;  -|2 - 1.5| - 0.05 * 6 * 0.25 = -0.575
    'cheetah_vel': (dict(i0=0.1), {'velocity': 1.5}, -0.575),
    # d v_x = -2;  -2 - 0.075 = -2.075
    'cheetah_dir': (dict(i0=0.1), {'direction': -1.0}, -2.075),
    # v = (2, 1); 2 cos(pi/3) + 1 sin(pi/3) - 0.5 * 8 * 0.25 + 1 = 1 + sqrt(3)/2
    'ant_dir': (dict(i0=0.1, i1=0.05), {'angle': math.pi / 3}, 1.0 + math.sqrt(3) / 2),
    # torso (1, -2), goal (2, 0.5): -(1 + 2.5) - 0.1 * 8 * 0.25 = -3.7
    'ant_goal': (dict(i0=1.0, i1=-2.0), {'goal': [2.0, 0.5]}, -3.7),
    # v_x = 0.016 / 0.008 = 2;  2 + 1 - 1e-3 * 3 * 0.25 = 2.99925
    'hopper_params': (dict(i0=0.016), None, 2.99925),
    # 2 + 1 - 1e-3 * 6 * 0.25 = 2.9985
    'walker_params': (dict(i0=0.016), None, 2.9985),
}


@pytest.mark.parametrize('name', FAMILIES)
def test_reward_matches_hand_computed_value_at_constructed_state(compiled, name):
  c = compiled(name)
  family = c.family
  dq, task, expected = REWARD_CASES[name]
  ps0, ps1 = _states(c, _dq(family, **dq))
  if task is None:   # dynamics family: the reward does not read the task
    task = _one(family.sample(_key(), 1, 'train'))
  task = {k: jnp.asarray(v, jnp.float32) for k, v in task.items()}
  action = 0.5 * jnp.ones(family.action_size)
  reward = family.env.reward_fn(ps0, ps1, action, task, family.env.dt)
  np.testing.assert_allclose(reward, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', FAMILIES)
def test_step_reward_is_the_family_formula_on_the_simulated_states(compiled, name):
  c = compiled(name)
  task = _one(c.family.sample(_key(8), 1, 'test_id'))
  state = c.reset(_key(9), task)
  action = jax.random.uniform(_key(10), (c.family.action_size,), minval=-1, maxval=1)
  nstate = c.step(state, action)
  expected = c.family.env.reward_fn(
      state.pipeline_state, nstate.pipeline_state, action, task, c.family.env.dt)
  np.testing.assert_allclose(nstate.reward, expected, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_equal(nstate.info['task'], task)
  chex.assert_shape(nstate.obs, (c.family.obs_size,))


# -- termination and truncation -------------------------------------------------------
# q index of the torso height and a value that leaves the healthy range
# (ant: z must stay in [0.2, 1.0]; hopper z > 0.7; walker z in (0.8, 2.0)).
UNHEALTHY = {
    'cheetah_vel': (1, -0.9, 0.0), 'cheetah_dir': (1, -0.9, 0.0),
    'ant_dir': (2, 1.5, 1.0), 'ant_goal': (2, 1.5, 0.0),
    'hopper_params': (1, -0.9, 1.0), 'walker_params': (1, -0.9, 1.0),
}


def _nominal_task(family):
  return jax.tree.map(jnp.zeros_like, _one(family.sample(_key(), 1, 'train'))) \
      if family.env.sys_fn is not None else _one(family.sample(_key(), 1, 'train'))


@pytest.mark.parametrize('name', FAMILIES)
def test_termination_follows_the_healthy_range(compiled, name):
  c = compiled(name)
  task = _nominal_task(c.family)
  index, value, expected_done = UNHEALTHY[name]
  state = c.reset(_key(11), task)
  healthy = c.step(state, jnp.zeros(c.family.action_size))
  assert float(healthy.done) == 0.0
  q = state.pipeline_state.q.at[index].set(
      c.family.env.base.sys.init_q[index] + value)
  ps = c.pipeline_init(q, jnp.zeros_like(state.pipeline_state.qd))
  nstate = c.step(state.replace(pipeline_state=ps), jnp.zeros(c.family.action_size))
  assert float(nstate.done) == expected_done
  assert float(nstate.info['truncation']) == 0.0


@pytest.mark.parametrize('name', ['cheetah_vel', 'ant_dir'])
def test_time_limit_truncates_and_is_flagged_apart_from_termination(compiled, name):
  c = compiled(name)
  task = _one(c.family.sample(_key(), 1, 'train'))
  state = c.reset(_key(12), task)
  state.info['steps'] = jnp.asarray(c.family.episode_length - 2, jnp.int32)
  a = jnp.zeros(c.family.action_size)
  s1 = c.step(state, a)
  assert (float(s1.done), float(s1.info['truncation'])) == (0.0, 0.0)
  s2 = c.step(s1, a)
  assert int(s2.info['steps']) == c.family.episode_length
  assert (float(s2.done), float(s2.info['truncation'])) == (1.0, 1.0)


def _zero_action_rollout(c, state, steps):
  """(ever done, highest torso z) of `steps` zero-action steps from `state`."""
  done, z_max = 0.0, 0.0
  for _ in range(steps):
    state = c.step(state, jnp.zeros(c.family.action_size))
    done = max(done, float(state.done))
    z_max = max(z_max, float(state.pipeline_state.x.pos[0, 2]))
  return done, z_max


def _at_height(c, state, z):
  """`state` with the torso's height q[2] set to `z` (velocities kept)."""
  q = state.pipeline_state.q.at[2].set(z)
  return state.replace(pipeline_state=c.pipeline_init(q, state.pipeline_state.qd))


def test_ant_starts_clear_of_the_floor_so_standing_still_never_ends(compiled):
  """Brax's ant reset noise of 0.1 starts the torso as low as z 0.45, feet in the floor:
  the solver launches the robot, which may land on its torso (no floor contact) and sink,
  ending the episode. The ant families' 0.05 keeps every start at z >= 0.50, from which
  a still ant stays healthy and on the ground."""
  c = compiled('ant_dir')
  task = _one(c.family.sample(_key(30), 1, 'test_id'))
  init_z = float(c.family.env.base.sys.init_q[2])
  starts = [c.reset(_key(31 + i), task) for i in range(8)]
  assert min(float(s.pipeline_state.q[2]) for s in starts) >= init_z - families.ANT_RESET_NOISE
  lowest = _at_height(c, starts[0], init_z - families.ANT_RESET_NOISE)
  done, z_max = _zero_action_rollout(c, lowest, 60)
  assert done == 0.0 and z_max < 0.8
  sunk = _at_height(c, starts[0], init_z - 0.1)                   # Brax's default noise
  assert _zero_action_rollout(c, sunk, 60)[1] > 0.8               # launched


# -- vmapping over tasks ------------------------------------------------------------
# One family per way a task enters (a reward target, a goal on another robot, dynamics
# params) in CI; each costs two env compiles (~20-30 s here), so the rest run in test-all.
VMAP_FAMILIES = [name if name in ('cheetah_vel', 'ant_goal', 'hopper_params') else
                 pytest.param(name, marks=pytest.mark.slow) for name in FAMILIES]


@pytest.mark.parametrize('name', VMAP_FAMILIES)
def test_vmapped_reset_and_step_over_k_tasks_equal_k_separate_calls(compiled, name):
  c = compiled(name)
  k = 3
  batch = c.family.sample(_key(13), k, 'test_ood')
  rngs = jax.random.split(_key(14), k)
  actions = jax.random.uniform(_key(15), (2, k, c.family.action_size), minval=-1, maxval=1)
  vstate = c.vreset(rngs, batch)
  singles = [c.reset(rngs[i], _one(batch, i)) for i in range(k)]
  for t in range(2):
    vstate = c.vstep(vstate, actions[t])
    singles = [c.step(s, actions[t, i]) for i, s in enumerate(singles)]
  for i, s in enumerate(singles):
    got = (_one(vstate.obs, i), _one(vstate.reward, i), _one(vstate.done, i))
    chex.assert_trees_all_close(got, (s.obs, s.reward, s.done), rtol=1e-4, atol=1e-4)
  chex.assert_shape(vstate.obs, (k, c.family.obs_size))


@pytest.mark.parametrize('name', VMAP_FAMILIES)
def test_many_different_tasks_compile_once(compiled, name):
  """New task values of every split, same shapes: the session's vmapped reset and step (the
  test above compiled them for 3 tasks) compile no new program."""
  c = compiled(name)
  sizes = []
  for seed, split in enumerate(tasks.SPLITS):
    batch = c.family.sample(_key(100 + seed), 3, split)
    state = c.vreset(jax.random.split(_key(seed), 3), batch)
    state = c.vstep(state, jnp.zeros((3, c.family.action_size)))
    sizes.append((c.vreset._cache_size(), c.vstep._cache_size()))
  assert sizes == sizes[:1] * len(sizes), sizes    # no compile after the first split


# -- dynamics ----------------------------------------------------------------------
def test_scale_dynamics_scales_each_quantity_by_its_documented_base():
  sys = tasks.make('hopper_params').env.sys
  n_body, n_dof = sys.body_mass.shape[0] - 1, sys.qd_size()
  task = {'log_mass': jnp.ones(n_body), 'log_inertia': -jnp.ones(n_body),
          'log_damping': 2 * jnp.ones(n_dof), 'log_friction': jnp.ones(n_body)}
  new = families.scale_dynamics(sys, task)
  np.testing.assert_allclose(new.body_mass[1:], 1.5 * sys.body_mass[1:], rtol=1e-6)
  np.testing.assert_allclose(new.body_mass[0], sys.body_mass[0])
  np.testing.assert_allclose(new.body_inertia[1:], sys.body_inertia[1:] / 1.5, rtol=1e-6)
  np.testing.assert_allclose(new.dof_damping, 1.69 * sys.dof_damping, rtol=1e-6)
  body_geoms = np.asarray(sys.geom_bodyid) > 0
  np.testing.assert_allclose(new.geom_friction[body_geoms],
                             1.5 * sys.geom_friction[body_geoms], rtol=1e-6)
  np.testing.assert_allclose(new.geom_friction[~body_geoms], sys.geom_friction[~body_geoms])
  np.testing.assert_allclose(new.link.inertia.mass, new.body_mass[1:])
  np.testing.assert_allclose(new.dof.damping, new.dof_damping)
  zero = jax.tree.map(jnp.zeros_like, task)
  nominal = families.scale_dynamics(sys, zero)
  for field in ('body_mass', 'body_inertia', 'dof_damping', 'geom_friction'):
    np.testing.assert_allclose(getattr(nominal, field), getattr(sys, field), rtol=1e-7)


def test_dynamics_tasks_change_the_simulated_trajectory(compiled):
  c = compiled('hopper_params')
  batch = c.family.sample(_key(16), 3, 'test_ood')
  rng = jnp.stack([_key(17)] * 3)   # same initial noise for every task
  state = c.vreset(rng, batch)
  for _ in range(10):
    state = c.vstep(state, 0.5 * jnp.ones((3, c.family.action_size)))
  x = np.asarray(state.pipeline_state.q[:, :2])
  assert np.abs(x[0] - x[1]).max() > 1e-3 and np.abs(x[1] - x[2]).max() > 1e-3


def test_same_key_same_rollout(compiled):
  c = compiled('ant_dir')
  task = _one(c.family.sample(_key(18), 1, 'train'))
  runs = []
  for _ in range(2):
    state = c.reset(_key(19), task)
    state = c.step(state, 0.3 * jnp.ones(c.family.action_size))
    runs.append((state.obs, state.reward, state.pipeline_state.q))
  chex.assert_trees_all_equal(*runs)
  other = c.reset(_key(20), task)
  assert not np.allclose(other.obs, c.reset(_key(19), task).obs)


def test_random_rollout_resets_ended_episodes_and_returns_rewards_per_step():
  from apb_jax.tasks.base import random_rollout
  from apb_jax.tasks.probes import make_probe
  family = make_probe('discount')   # 2-step episodes, reward 1 at the end
  batch = family.sample(_key(21), 4, 'train')
  state = jax.vmap(family.env.reset)(jax.random.split(_key(22), 4), batch)
  run = jax.jit(random_rollout, static_argnums=(0, 3))
  final, rewards = run(family.env, state, _key(23), 6)
  chex.assert_shape(rewards, (6, 4))
  np.testing.assert_array_equal(rewards, np.tile([0.0, 1.0], 3)[:, None] * np.ones(4))
  np.testing.assert_array_equal(final.info['steps'], 0)   # reset after each episode
  chex.assert_trees_all_equal(final.info['task'], batch)

"""The six task families of DESIGN.md, one builder each.

Every reward is written out here, in one line, from the torso positions of the
pipeline states before (`ps0`) and after (`ps1`) an env step (velocity =
displacement / dt, as Brax computes it), the action and the task. Termination
is Brax's own healthy check, configured per family through the base env.

| family        | task leaves                       | train / test_id       | test_ood               |
|---------------|-----------------------------------|-----------------------|------------------------|
| cheetah_vel   | velocity []                       | U[0, 2]               | U[2.5, 3.5]            |
| cheetah_dir   | direction []                      | +1                    | -1                     |
| ant_dir       | angle []                          | U[-pi/2, pi/2]        | U[3pi/4, 5pi/4]        |
| ant_goal      | goal [2]                          | disk r <= 2.5         | annulus 3 <= r <= 4    |
| hopper_params | log_mass, log_inertia, log_friction [n_body], log_damping [n_dof] | U[-2, 2] | abs in U[2.5, 3], random sign |
| walker_params | as hopper_params                  | as hopper             | as hopper              |

Disk and annulus goals are uniform in area. Dynamics tasks scale body mass and
inertia by 1.5^u, joint damping by 1.3^u and the friction of each body's geoms
by 1.5^u. MuJoCo combines the friction of two touching geoms with `max`, so the
floor's own friction (1.0 hopper, 0.7 walker) bounds the effective friction
from below: lowering a body's friction below the floor's has no effect.
Derived constants (e.g. `body_subtreemass`, `dof_invweight0`) are left at their
nominal values, as in Brax's domain randomisation and PEARL's rand_param_envs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from brax import envs as brax_envs
from mujoco import mjx

from apb_jax.tasks.base import TaskEnv, TaskFamily, TaskParams

EPISODE_LENGTH = 200
DEFAULT_BACKEND = 'mjx'
# Brax's ant starts with its torso at z = 0.55 plus uniform noise of +-reset_noise_scale on
# every q (default 0.1). Starts below z ~ 0.47 put the feet into the floor; the contact
# solver launches the robot (torso up to z 0.86-0.99), it lands on its torso, which does
# not collide with the floor, and sinks through it. Measured with zero actions, 128
# episodes: at 0.1, 12.5% end within 60 steps (ant_dir return ~-10 instead of ~200; on
# ant_goal the ant stays sunk); at 0.05 (torso z in [0.50, 0.60]) none does, and the
# highest torso is 0.69. Both ant families use 0.05.
ANT_RESET_NOISE = 0.05


def _velocity(ps0, ps1, dt):
  """Torso (link 0) linear velocity [3] over one env step."""
  return (ps1.x.pos[0] - ps0.x.pos[0]) / dt


def _ctrl(action):
  return jnp.sum(jnp.square(action))


def _uniform(key, n, lo, hi, shape=()):
  return jax.random.uniform(key, (n, *shape), minval=lo, maxval=hi)


# -- rewards -----------------------------------------------------------------
def cheetah_vel_reward(ps0, ps1, action, task, dt):
  v_x = _velocity(ps0, ps1, dt)[0]
  return -jnp.abs(v_x - task['velocity']) - 0.05 * _ctrl(action)


def cheetah_dir_reward(ps0, ps1, action, task, dt):
  v_x = _velocity(ps0, ps1, dt)[0]
  return task['direction'] * v_x - 0.05 * _ctrl(action)


def ant_dir_reward(ps0, ps1, action, task, dt):
  v_xy = _velocity(ps0, ps1, dt)[:2]
  heading = jnp.stack([jnp.cos(task['angle']), jnp.sin(task['angle'])])
  return jnp.dot(v_xy, heading) - 0.5 * _ctrl(action) + 1.0


def ant_goal_reward(ps0, ps1, action, task, dt):
  del ps0, dt
  xy = ps1.x.pos[0, :2]
  return -jnp.sum(jnp.abs(xy - task['goal'])) - 0.1 * _ctrl(action)


def locomotion_reward(ps0, ps1, action, task, dt):
  """Hopper / walker: forward velocity + 1 (alive) - 1e-3 |a|^2."""
  del task
  return _velocity(ps0, ps1, dt)[0] + 1.0 - 1e-3 * _ctrl(action)


# -- dynamics ----------------------------------------------------------------
def scale_dynamics(sys, task: TaskParams):
  """Returns `sys` with mass, inertia, damping and friction scaled by `task`.

  Scales both the MJX fields (used by the 'mjx' backend) and Brax's own
  link/dof fields (used by 'generalized', 'positional' and 'spring'), so every
  backend simulates the same task. Body 0 (the world) is never scaled.
  """
  mass = 1.5 ** task['log_mass']            # [n_body]
  inertia = 1.5 ** task['log_inertia']      # [n_body]
  damping = 1.3 ** task['log_damping']      # [n_dof]
  friction = 1.5 ** task['log_friction']    # [n_body]
  one = jnp.ones((1,))
  geom_scale = jnp.concatenate([one, friction])[sys.geom_bodyid]   # [n_geom]
  body_mass = sys.body_mass * jnp.concatenate([one, mass])
  dof_damping = sys.dof_damping * damping
  return sys.tree_replace({
      'body_mass': body_mass,
      'body_inertia': sys.body_inertia * jnp.concatenate([one, inertia])[:, None],
      'dof_damping': dof_damping,
      'geom_friction': sys.geom_friction * geom_scale[:, None],
      'link.inertia.mass': body_mass[1:],
      'link.inertia.i': sys.link.inertia.i * inertia[:, None, None],
      'dof.damping': dof_damping,
  })


def _dynamics_samplers(n_body: int, n_dof: int):
  shapes = {'log_mass': n_body, 'log_inertia': n_body, 'log_damping': n_dof,
            'log_friction': n_body}

  def in_distribution(rng, n):
    keys = jax.random.split(rng, len(shapes))
    return {k: _uniform(key, n, -2.0, 2.0, (size,))
            for key, (k, size) in zip(keys, sorted(shapes.items()), strict=True)}

  def out_of_distribution(rng, n):
    keys = jax.random.split(rng, len(shapes))
    out = {}
    for key, (k, size) in zip(keys, sorted(shapes.items()), strict=True):
      k_mag, k_sign = jax.random.split(key)
      magnitude = _uniform(k_mag, n, 2.5, 3.0, (size,))
      sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (n, size)), 1.0, -1.0)
      out[k] = magnitude * sign
    return out

  return {'train': in_distribution, 'test_id': in_distribution,
          'test_ood': out_of_distribution}


# -- builders ----------------------------------------------------------------
def _brax_env(robot, backend, **env_kwargs):
  """Brax's env `robot`, its system on this process's first device. MJX's put_model places
  the model on `jax.devices()[0]`, which in a run of several processes (hosts.py) is process
  0's device: every other process would hold a model it cannot read."""
  if jax.process_count() == 1:
    return brax_envs.get_environment(robot, backend=backend, **env_kwargs)
  put_model = mjx.put_model
  mjx.put_model = lambda m, *a, **k: put_model(m, *a, **{'device': jax.local_devices()[0],
                                                         **k})
  try:
    return brax_envs.get_environment(robot, backend=backend, **env_kwargs)
  finally:
    mjx.put_model = put_model


def _reward_family(name, robot, reward_fn, key, train, ood, train_text, ood_text,
                   backend, episode_length, **env_kwargs):
  """A family whose task is one parameter `key` of the reward.

  `train` / `ood` draw `[n, ...]` values: fn(rng, n). test_id uses `train`.
  """
  base = _brax_env(robot, backend, **env_kwargs)

  def wrap(draw):
    return lambda rng, n: {key: draw(rng, n)}

  return TaskFamily(
      name=name, env=TaskEnv(base, reward_fn, episode_length, name=name),
      samplers={'train': wrap(train), 'test_id': wrap(train), 'test_ood': wrap(ood)},
      description={'train': train_text, 'test_id': train_text, 'test_ood': ood_text})


def cheetah_vel(backend=DEFAULT_BACKEND, episode_length=EPISODE_LENGTH):
  return _reward_family(
      'cheetah_vel', 'halfcheetah', cheetah_vel_reward, 'velocity',
      lambda r, n: _uniform(r, n, 0.0, 2.0), lambda r, n: _uniform(r, n, 2.5, 3.5),
      'v* ~ U[0, 2]', 'v* ~ U[2.5, 3.5]', backend, episode_length)


def cheetah_dir(backend=DEFAULT_BACKEND, episode_length=EPISODE_LENGTH):
  return _reward_family(
      'cheetah_dir', 'halfcheetah', cheetah_dir_reward, 'direction',
      lambda r, n: jnp.ones((n,)), lambda r, n: -jnp.ones((n,)),
      'd = +1', 'd = -1', backend, episode_length)


def ant_dir(backend=DEFAULT_BACKEND, episode_length=EPISODE_LENGTH):
  pi = math.pi
  return _reward_family(
      'ant_dir', 'ant', ant_dir_reward, 'angle',
      lambda r, n: _uniform(r, n, -pi / 2, pi / 2),
      lambda r, n: _uniform(r, n, 3 * pi / 4, 5 * pi / 4),
      't ~ U[-pi/2, pi/2]', 't ~ U[3pi/4, 5pi/4]', backend, episode_length,
      healthy_z_range=(0.2, 1.0), terminate_when_unhealthy=True,
      reset_noise_scale=ANT_RESET_NOISE)


def _planar_goal(rng, n, r_min, r_max):
  """Uniform-in-area goals on the annulus r_min <= r <= r_max (disk if 0)."""
  k_r, k_t = jax.random.split(rng)
  r = jnp.sqrt(_uniform(k_r, n, r_min ** 2, r_max ** 2))
  t = _uniform(k_t, n, -math.pi, math.pi)
  return jnp.stack([r * jnp.cos(t), r * jnp.sin(t)], axis=-1)


def ant_goal(backend=DEFAULT_BACKEND, episode_length=EPISODE_LENGTH):
  return _reward_family(
      'ant_goal', 'ant', ant_goal_reward, 'goal',
      lambda r, n: _planar_goal(r, n, 0.0, 2.5), lambda r, n: _planar_goal(r, n, 3.0, 4.0),
      'g uniform on the disk r <= 2.5', 'g uniform on the annulus 3 <= r <= 4',
      backend, episode_length, terminate_when_unhealthy=False,
      exclude_current_positions_from_observation=False, reset_noise_scale=ANT_RESET_NOISE)


def _dynamics_family(name, robot, backend, episode_length):
  base = _brax_env(robot, backend)
  n_body = base.sys.body_mass.shape[0] - 1
  n_dof = base.sys.qd_size()
  return TaskFamily(
      name=name,
      env=TaskEnv(base, locomotion_reward, episode_length,
                  sys_fn=scale_dynamics, name=name),
      samplers=_dynamics_samplers(n_body, n_dof),
      description={
          'train': 'each log-scale u ~ U[-2, 2]',
          'test_id': 'each log-scale u ~ U[-2, 2]',
          'test_ood': 'each |u| ~ U[2.5, 3], random sign'},
  )


def hopper_params(backend=DEFAULT_BACKEND, episode_length=EPISODE_LENGTH):
  return _dynamics_family('hopper_params', 'hopper', backend, episode_length)


def walker_params(backend=DEFAULT_BACKEND, episode_length=EPISODE_LENGTH):
  return _dynamics_family('walker_params', 'walker2d', backend, episode_length)


BUILDERS = {
    'cheetah_vel': cheetah_vel,
    'cheetah_dir': cheetah_dir,
    'ant_dir': ant_dir,
    'ant_goal': ant_goal,
    'hopper_params': hopper_params,
    'walker_params': walker_params,
}

"""SAC and TD3: probe environments, task vmapping, frozen backbone, param noise, sharding."""

import json
import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import policy
from apb_jax.learners import LearnerConfig, agents, make_train, networks
from apb_jax.tasks.probes import make_probe

PROBE_POLICY = policy.PolicyConfig(widths=(32, 32))
PROBE = LearnerConfig(
    policy=PROBE_POLICY, critic_widths=(32, 32), total_steps=4096, num_envs=16,
    eval_every=1024, warmup_steps=256, batch_size=64, buffer_size=4096,
    actor_lr=3e-3, critic_lr=3e-3, alpha_lr=3e-3, init_alpha=0.1, gamma=0.5, tau=0.05,
    normalize_obs=False, grad_updates_per_step=2)
K = 3


def _key(i):
  return jax.random.PRNGKey(i)


def _init_params(k, obs_size=1, action_size=1, config=PROBE_POLICY, seed=1):
  backbone = policy.init_backbone(_key(seed), config)
  adapters = jax.vmap(lambda r: policy.init_adapters(r, obs_size, action_size, config))(
      jax.random.split(_key(seed + 1), k))
  return {'backbone': backbone, 'adapters': adapters}


def _train(kind, config, k=K):
  family = make_probe(kind)
  tasks = family.sample(_key(0), k, 'train')
  params = _init_params(k)
  result = make_train(config, family).train(_key(3), tasks, params, show_progress=False)
  return result, tasks, params


def _q_and_action(result, params, config, obs, i):
  agent = jax.tree.map(lambda x: x[i], result.state.agent)
  action = agents.deterministic_action(agent.actor, obs, params['backbone'], config)
  return networks.critic_apply(agent.critic, obs, action), action


ALGOS = ['sac', 'td3']


@pytest.mark.parametrize('algo', ALGOS)
def test_probe_constant_reward_value_is_one(algo):
  config = PROBE.replace(algo=algo)
  result, _, params = _train('constant', config)
  for i in range(K):
    q, _ = _q_and_action(result, params, config, jnp.zeros((1, 1)), i)
    np.testing.assert_allclose(q, 1.0, atol=0.05)


@pytest.mark.parametrize('algo', ALGOS)
def test_probe_value_depends_on_observation(algo):
  config = PROBE.replace(algo=algo)
  result, _, params = _train('observation', config)
  for i in range(K):
    q, _ = _q_and_action(result, params, config, jnp.array([[-1.0], [1.0]]), i)
    np.testing.assert_allclose(q, [[-1.0, 1.0]] * 2, atol=0.1)


@pytest.mark.parametrize('exploration', ['action', 'param'])
@pytest.mark.parametrize('algo', ALGOS)
def test_probe_actor_finds_each_tasks_best_action(algo, exploration):
  config = PROBE.replace(algo=algo, exploration=exploration, total_steps=8192, eval_every=2048)
  result, tasks, params = _train('action', config)
  for i in range(K):
    _, action = _q_and_action(result, params, config, jnp.zeros((1, 1)), i)
    assert abs(float(action[0, 0]) - float(tasks['target'][i])) < 0.1, (i, action, tasks['target'])
  assert result.curves[:, -1].min() > -0.01   # eval return -(a - target)^2
  chex.assert_shape(result.curves, (K, 5))


@pytest.mark.parametrize('algo', ALGOS)
def test_probe_two_steps_discount_value(algo):
  config = PROBE.replace(algo=algo)
  result, _, params = _train('discount', config)
  for i in range(K):
    q, _ = _q_and_action(result, params, config, jnp.array([[0.0], [1.0]]), i)
    np.testing.assert_allclose(q, [[config.gamma, 1.0]] * 2, atol=0.05)


# -- structure -------------------------------------------------------------------------
@pytest.mark.parametrize('algo', ALGOS)
def test_one_chunk_over_k_tasks_equals_k_single_task_chunks(algo):
  config = PROBE.replace(algo=algo, total_steps=512, eval_every=512, warmup_steps=128)
  family = make_probe('action')
  trainer = make_train(config, family)
  tasks = family.sample(_key(0), K, 'train')
  params = _init_params(K)
  state = trainer.init(_key(4), tasks, params)
  batched, metrics = trainer.chunk(state, params['backbone'], 0)
  returns = trainer.evaluate(batched, params['backbone'])
  for i in range(K):
    one = jax.tree.map(lambda x, i=i: x[i:i + 1], state)
    single, single_metrics = trainer.chunk(one, params['backbone'], 0)
    chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i:i + 1], batched.agent),
                                single.agent, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], metrics),
                                jax.tree.map(lambda x: x[0], single_metrics), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returns[i], trainer.evaluate(single, params['backbone'])[0],
                               rtol=1e-5, atol=1e-6)


def test_adapters_mode_leaves_backbone_bit_for_bit_and_all_mode_moves_it():
  family = make_probe('observation')   # obs +-1, so every backbone leaf gets gradient
  tasks = family.sample(_key(0), K, 'train')
  params = _init_params(K)
  before = jax.tree.map(np.array, params['backbone'])
  config = PROBE.replace(total_steps=1024, eval_every=1024)
  result = make_train(config, family).train(_key(3), tasks, params, show_progress=False)
  chex.assert_trees_all_equal(params['backbone'], before)
  assert set(result.state.agent.actor) == {'adapters'}          # no backbone copies
  full = make_train(config.replace(mode='all'), family).train(
      _key(3), tasks, params, show_progress=False)
  moved = full.state.agent.actor['backbone']                   # [K, ...] per task
  chex.assert_tree_shape_prefix(moved, (K,))
  changed = jax.tree.map(lambda m, b: not np.allclose(m[0], b), moved, before)
  assert all(jax.tree.leaves(changed))
  chex.assert_trees_all_equal(params['backbone'], before)


@pytest.mark.parametrize('target,direction', [(1e-4, -1), (10.0, 1)])
def test_param_noise_sigma_moves_toward_its_target(target, direction):
  config = PROBE.replace(exploration='param', param_noise_target=target,
                         total_steps=2048, eval_every=1024, param_noise_interval=4)
  result, _, _ = _train('action', config)
  sigma = result.metrics['param_noise_sigma']           # [K, n_chunks]
  assert (np.sign(sigma[:, -1] - config.param_noise_init) == direction).all()
  assert (np.sign(np.diff(sigma, axis=-1)) == direction).all()


def test_wrong_task_axis_and_bad_config_fail_with_the_fix():
  family = make_probe('constant')
  params = _init_params(2)
  with pytest.raises(ValueError, match='leading task axis of size 3'):
    make_train(PROBE, family).init(_key(0), family.sample(_key(0), 3, 'train'), params)
  with pytest.raises(ValueError, match='multiple of num_envs'):
    PROBE.replace(total_steps=1000)
  with pytest.raises(ValueError, match="choose one of \\['sac', 'td3'\\]"):
    PROBE.replace(algo='ppo')


SHARD_SCRIPT = """
import json, sys, jax, numpy as np
sys.path.insert(0, {tests!r})
from test_learners import PROBE, _init_params, _key
from apb_jax.learners import make_train
from apb_jax.tasks.probes import make_probe
family = make_probe('action')
config = PROBE.replace(total_steps=512, eval_every=256, warmup_steps=128)
result = make_train(config, family).train(_key(3), family.sample(_key(0), 4, 'train'),
                                          _init_params(4), show_progress=False)
kernel = result.state.agent.actor['adapters']['out']['kernel']
print(json.dumps({{'devices': jax.device_count(), 'shards': len(kernel.sharding.device_set),
                  'curves': result.curves.tolist(), 'kernel': np.asarray(kernel).tolist()}}))
"""


def _run_with_devices(n):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}',
             JAX_PLATFORMS='cpu')
  code = SHARD_SCRIPT.format(tests=str(pathlib.Path(__file__).parent))
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                       text=True, timeout=600, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_task_axis_sharded_over_two_devices_equals_single_device():
  one, two = _run_with_devices(1), _run_with_devices(2)
  assert (one['devices'], two['devices'], two['shards']) == (1, 2, 2)
  np.testing.assert_allclose(two['curves'], one['curves'], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(two['kernel'], one['kernel'], rtol=1e-4, atol=1e-5)


def test_checkpoint_hook_and_resume_reproduce_the_uninterrupted_run():
  config = PROBE.replace(total_steps=1536, eval_every=512, warmup_steps=128)
  family = make_probe('observation')
  tasks = family.sample(_key(0), 2, 'train')
  params = _init_params(2)
  trainer = make_train(config, family)
  saved = {}

  def checkpoint(chunks_done, state, curves):
    saved[chunks_done] = (state, chunks_done, list(curves))

  full = trainer.train(_key(3), tasks, params, checkpoint_fn=checkpoint, show_progress=False)
  assert sorted(saved) == [1, 2, 3]
  resumed = trainer.train(_key(3), tasks, params, resume=saved[1], show_progress=False)
  np.testing.assert_array_equal(resumed.curves, full.curves)
  np.testing.assert_array_equal(resumed.steps, full.steps)
  chex.assert_trees_all_equal(resumed.state.agent, full.state.agent)

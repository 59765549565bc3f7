"""SAC and TD3: probe environments, task vmapping, frozen backbone, param noise, sharding."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from apb_jax import policy
from apb_jax.learners import LearnerConfig, agents, make_train, memory, networks
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
  action = agents.deterministic_action(agent.actor, obs, result.state.shared.backbone, config)
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


@pytest.mark.parametrize('algo,exploration,mode', [
    ('sac', 'action', 'adapters'), ('sac', 'param', 'adapters'), ('td3', 'action', 'adapters'),
    ('td3', 'param', 'adapters'), ('sac', 'action', 'shared')])
def test_probe_actor_finds_each_tasks_best_action(algo, exploration, mode):
  config = PROBE.replace(algo=algo, exploration=exploration, mode=mode, total_steps=8192,
                         eval_every=2048)
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
  batched, metrics = trainer.chunk(state, 0)
  returns = trainer.evaluate(batched)
  for i in range(K):
    single, single_metrics = trainer.chunk(_task_slice(state, i), 0)
    chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i:i + 1], batched.agent),
                                single.agent, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], metrics),
                                jax.tree.map(lambda x: x[0], single_metrics), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returns[i], trainer.evaluate(single)[0], rtol=1e-5, atol=1e-6)


def _task_slice(state, i):
  """Task i of a batched LearnerState, keeping the task axis (size 1); `shared` is unbatched."""
  shared = state.shared
  return jax.tree.map(lambda x: x[i:i + 1], state.replace(shared=None)).replace(shared=shared)


def test_adapters_mode_leaves_backbone_bit_for_bit_and_all_mode_moves_it():
  family = make_probe('observation')   # obs +-1, so every backbone leaf gets gradient
  tasks = family.sample(_key(0), K, 'train')
  params = _init_params(K)
  before = jax.tree.map(np.array, params['backbone'])
  config = PROBE.replace(total_steps=1024, eval_every=1024)
  result = make_train(config, family).train(_key(3), tasks, params, show_progress=False)
  chex.assert_trees_all_equal(params['backbone'], before)
  chex.assert_trees_all_equal(result.state.shared.backbone, before)
  assert result.state.shared.backbone_opt == ()                # no optimiser for it
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


def test_shared_mode_steps_one_backbone_by_the_mean_of_the_task_gradients():
  """_actor_step under a named task vmap: Adam on the task-mean backbone gradient,
  and each task's adapters on its own gradient only."""
  config = PROBE.replace(mode='shared')
  params = _init_params(K)
  targets = jnp.array([-0.5, 0.1, 0.7])
  obs = jax.random.normal(_key(5), (K, 8, 1))

  def loss_fn(actor, backbone, o, target):
    loc = policy.apply(backbone, actor['adapters'], o, PROBE_POLICY).loc
    return jnp.mean(jnp.square(loc - target)), ()

  def step(adapters, o, target):
    agent = agents.init(_key(0), {'backbone': params['backbone'], 'adapters': adapters},
                        1, 1, config)
    shared = agents.init_shared(params['backbone'], config)
    agent, shared, _, _ = agents._actor_step(
        agent, shared, lambda a, b: loss_fn(a, b, o, target), config)
    return agent.actor, shared

  actors, shared = jax.vmap(step, in_axes=(0, 0, 0), out_axes=(0, None),
                            axis_name=agents.TASK_AXIS)(params['adapters'], obs, targets)
  grads = jax.vmap(jax.grad(lambda b, a, o, t: loss_fn({'adapters': a}, b, o, t)[0]),
                   in_axes=(None, 0, 0, 0))(params['backbone'], params['adapters'], obs, targets)
  mean_grad = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
  tx = optax.adam(config.actor_lr)
  updates, opt = tx.update(mean_grad, tx.init(params['backbone']), params['backbone'])
  chex.assert_trees_all_close(shared.backbone, optax.apply_updates(params['backbone'], updates),
                              rtol=1e-6, atol=1e-7)
  chex.assert_trees_all_close(shared.backbone_opt, opt, rtol=1e-6, atol=1e-9)  # mu = 0.1 mean g
  chex.assert_trees_all_equal_shapes(shared.backbone, params['backbone'])   # one copy
  for i in range(K):   # adapters: the same step as a single task with its own loss
    alone, _ = jax.vmap(step, in_axes=(0, 0, 0), out_axes=(0, None), axis_name=agents.TASK_AXIS)(
        *jax.tree.map(lambda x, i=i: x[i:i + 1], (params['adapters'], obs, targets)))
    chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i:i + 1], actors), alone,
                                rtol=1e-6, atol=1e-7)


def test_shared_mode_trains_one_backbone_copy_that_moves():
  family = make_probe('observation')
  params = _init_params(K)
  result = make_train(PROBE.replace(mode='shared', total_steps=1024, eval_every=1024), family
                      ).train(_key(3), family.sample(_key(0), K, 'train'), params,
                              show_progress=False)
  chex.assert_trees_all_equal_shapes(result.state.shared.backbone, params['backbone'])
  moved = jax.tree.map(lambda m, b: not np.allclose(m, b), result.state.shared.backbone,
                       params['backbone'])
  assert all(jax.tree.leaves(moved))
  assert set(result.state.agent.actor) == {'adapters'}


def test_wrong_task_axis_and_bad_config_fail_with_the_fix():
  family = make_probe('constant')
  params = _init_params(2)
  with pytest.raises(ValueError, match='leading task axis of size 3'):
    make_train(PROBE, family).init(_key(0), family.sample(_key(0), 3, 'train'), params)
  with pytest.raises(ValueError, match='multiple of num_envs'):
    PROBE.replace(total_steps=1000)
  with pytest.raises(ValueError, match="choose one of \\['sac', 'td3'\\]"):
    PROBE.replace(algo='ppo')


def test_state_too_large_for_the_device_stops_before_compiling():
  """2 tasks x 2^30 transitions of the probe (>= 5 floats each): >= 40 GiB, held twice."""
  family = make_probe('constant')
  big = PROBE.replace(buffer_size=2 ** 30)
  abstract = jax.eval_shape(make_train(big, family)._init, *make_train(big, family)._init_args(
      _key(0), family.sample(_key(0), 2, 'train'), _init_params(2)))
  assert memory.state_bytes(abstract) > 2 * 2 ** 30 * 5 * 4
  with pytest.raises(ValueError, match=r'needs \d+\.\d GiB per device, held twice .* lower '
                     '--config.rl.buffer_size'):
    memory.check_fits(abstract, 2, devices=[_Device(16 * 2 ** 30)])
  memory.check_fits(abstract, 2, devices=[_Device(128 * 2 ** 30)])       # fits: no error
  # the real device: 8 tasks (>= 160 GiB, held twice) exceed this CPU's memory and an H200's
  # 141 GiB alike (2 tasks fitted on the H200 and did not raise there)
  with pytest.raises(ValueError, match='GiB per device'):
    make_train(big, family).init(
        _key(0), family.sample(_key(0), 8, 'train'), _init_params(8))


class _Device:
  """A stand-in device with `limit` bytes of memory."""
  platform, device_kind = 'gpu', 'test GPU'

  def __init__(self, limit):
    self.limit = limit

  def memory_stats(self):
    return {'bytes_limit': self.limit}


def test_task_axis_sharded_over_two_devices_equals_single_device(sharded_matches_single):
  """Mode 'shared': adapters split over devices, the backbone's mean gradient all-reduced."""
  sharded_matches_single('test_learners', warmup_steps=128)


def test_task_axis_over_two_processes_equals_one_process():
  """Two processes of two CPU devices each (jax.distributed, XLA:CPU's gloo collectives over
  localhost): the 4 tasks split over the 4 devices of both, the backbone's task-mean gradient
  all-reduced across processes; every process reads the same whole curves and params, equal
  to one process's."""
  from conftest import run_processes, shard_run
  one, procs = shard_run('test_learners', {'warmup_steps': 128}), run_processes(
      'test_learners', {'warmup_steps': 128})
  for out in procs:
    assert (out['devices'], out['processes'], out['shards']) == (4, 2, 4)
    for name in ('curves', 'kernel', 'backbone'):
      np.testing.assert_allclose(out[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)


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


@pytest.mark.parametrize('algo', ALGOS)
def test_actor_delay_trains_only_the_critic_until_it_ends(algo):
  """actor_delay: through warm-up and the delay the actor (and SAC's temperature) stay bit for
  bit where they started while the critic learns; one chunk later the actor moves."""
  family = make_probe('action')
  config = PROBE.replace(algo=algo, total_steps=2048, eval_every=512, actor_delay=768)
  tasks = family.sample(_key(0), 2, 'train')
  trainer = make_train(config, family)
  state = trainer.init(_key(3), tasks, _init_params(2))
  start = state.agent
  state, _ = trainer.chunk(state, np.int32(0))        # env steps 0-512: warm-up 256 + delay
  state, _ = trainer.chunk(state, np.int32(1))        # 512-1024: the delay ends at 1024
  chex.assert_trees_all_equal(state.agent.actor, start.actor)
  chex.assert_trees_all_equal(state.agent.log_alpha, start.log_alpha)
  assert not np.allclose(state.agent.critic['dense_0']['kernel'], start.critic['dense_0']['kernel'])
  state, _ = trainer.chunk(state, np.int32(2))
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), state.agent.actor, start.actor)
  assert any(jax.tree.leaves(moved))     # the probe's obs is 0: its output bias moves
  with pytest.raises(ValueError, match='actor_delay=100 must be a non-negative multiple'):
    PROBE.replace(actor_delay=100)


def _per_run(params, k):
  """`params` with the backbone tiled per run (a per-run-backbone trainer's input)."""
  return dict(params, backbone=jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)),
                                             params['backbone']))


@pytest.mark.parametrize('mode', ['adapters', 'all'])
def test_two_stages_over_different_backbones_in_one_call_equal_each_alone(mode):
  """Stacking (plan.py): runs of two stages, each with its own backbone and stage key, side
  by side on the task axis of one per-run-backbone call, train exactly as each stage alone
  (with its one backbone shared by its runs)."""
  config = PROBE.replace(mode=mode, total_steps=1024, eval_every=512, warmup_steps=128)
  family = make_probe('observation')
  tasks = family.sample(_key(0), 2 * K, 'train')
  stages = [(_init_params(K, seed=1), _key(5)), (_init_params(K, seed=7), _key(6))]
  alone = [make_train(config, family).train(key, jax.tree.map(lambda x, i=i: x[i * K:(i + 1) * K], tasks),
                                            params, show_progress=False)
           for i, (params, key) in enumerate(stages)]
  stacked = jax.tree.map(lambda *x: jnp.concatenate(x), *[_per_run(p, K) for p, _ in stages])
  keys = jnp.concatenate([jax.random.split(key, K) for _, key in stages])
  together = make_train(config, family, per_run_backbone=True).train(
      keys, tasks, stacked, show_progress=False)
  np.testing.assert_array_equal(together.curves, np.concatenate([r.curves for r in alone]))
  for i, r in enumerate(alone):     # bit for bit on this CPU (measured), not just close
    part = jax.tree.map(lambda x, i=i: x[i * K:(i + 1) * K], together.state.agent)
    chex.assert_trees_all_equal(part, r.state.agent)
  backbones = together.state.shared.backbone          # one per run, the frozen start in 'adapters'
  chex.assert_tree_shape_prefix(backbones, (2 * K,))
  if mode == 'adapters':
    chex.assert_trees_all_equal(backbones, stacked['backbone'])

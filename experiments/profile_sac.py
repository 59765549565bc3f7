r"""`make profile`: where our SAC's time goes against brax.training's, part by part.

`make bench` compares whole runs (env steps/s with evaluation). This splits one training
iteration (`num_envs` env steps, then `updates` SGD steps on `batch_size` transitions) and
the evaluation at `make bench`'s settings (bench_learners.py's flags) into parts, each
timed alone as a compiled program, medians of `--calls` calls, alternating rounds:

  update_ms        `updates` SAC updates on one batch each:
                     ours_task_axis  agents.updates vmapped over a task axis of size 1,
                                     as the learners run it;
                     ours_one_task   the same updates without the task vmap;
                     brax            brax.training's sgd_step (its train.py keeps it in a
                                     closure, so it is rebuilt here from brax's own
                                     make_losses and gradient_update_fn, line for line);
  iteration_ms     our whole training iteration after warm-up (one chunk / iterations) and
                   the same chunk with no updates (acting, env step, replay insert,
                   normaliser, auto-reset);
  sim_limit_ms     16 random-action env steps with auto-reset (bench_learners.sim_limit);
  eval_s           one evaluation, ours (trainer.evaluate) and brax's acting.Evaluator.

`hlo` counts, in each update program as XLA optimised it, the instructions, dots and
transposes (a transpose is a strided copy of a whole array; on CPU the task axis adds
some, around the weight gradients' batched dots). Written to `--profile_out` (JSON).
"""

from __future__ import annotations

import functools
import os
import re
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import bench_learners as bench  # noqa: E402  (defines the settings' flags)

FLAGS = flags.FLAGS
flags.DEFINE_integer('calls', 60, 'Timed calls per update program and round.')
flags.DEFINE_integer('rounds', 3, 'Alternating rounds of the update programs (median).')
flags.DEFINE_string('profile_out', 'runs/bench/profile_sac.json', 'Output JSON.')


def _median_ms(fn, *args, calls):
  import jax
  jax.block_until_ready(fn(*args))
  walls = []
  for _ in range(calls):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    walls.append(time.perf_counter() - t)
  return statistics.median(walls) * 1e3


def _hlo_counts(compiled) -> dict:
  text = compiled.as_text()
  return {'instructions': len(re.findall(r'^\s*(?:ROOT )?%\S+ = ', text, re.M)),
          'dots': len(re.findall(r' dot\(', text)),
          'transposes': len(re.findall(r' transpose\(', text))}


def _batches(rng, g, b, obs_size, action_size):
  import jax
  import jax.numpy as jnp

  from apb_jax.learners import agents
  k = jax.random.split(rng, 4)
  return agents.Transition(
      obs=jax.random.normal(k[0], (g, b, obs_size)),
      action=jax.random.uniform(k[1], (g, b, action_size), minval=-1, maxval=1),
      reward=jax.random.normal(k[2], (g, b)), next_obs=jax.random.normal(k[3], (g, b, obs_size)),
      terminal=jnp.zeros((g, b)))


def ours_updates(family, config):
  """{name: (compiled, args)} for our updates with and without the task axis."""
  import jax

  from apb_jax.learners import agents
  params = bench._init_params(family, config, 1, FLAGS.seed)
  one = {'backbone': params['backbone'],
         'adapters': jax.tree.map(lambda x: x[0], params['adapters'])}
  agent = agents.init(jax.random.PRNGKey(2), one, family.obs_size, family.action_size, config)
  shared = agents.init_shared(params['backbone'], config)
  batches = _batches(jax.random.PRNGKey(3), config.grad_updates_per_step, config.batch_size,
                     family.obs_size, family.action_size)
  after_warmup = config.warmup_steps // config.num_envs * config.grad_updates_per_step

  def one_task(agent, batches, rng):
    return agents.updates(agent, shared, batches, rng, config, after_warmup)[::2]

  task_axis = jax.vmap(one_task, axis_name=agents.TASK_AXIS)
  stack = functools.partial(jax.tree.map, lambda x: x[None])
  out = {}
  for name, fn, args in (
      ('ours_task_axis', task_axis, (stack(agent), stack(batches),
                                     jax.random.split(jax.random.PRNGKey(5), 1))),
      ('ours_one_task', one_task, (agent, batches, jax.random.PRNGKey(5)))):
    out[name] = (jax.jit(fn).lower(*args).compile(), args)
  return out


def brax_update(family, config):
  """(compiled, args): brax.training's `updates` sgd_steps (brax/training/agents/sac/train.py)
  at the same sizes, with its losses, networks, Adam and normaliser."""
  import jax
  import jax.numpy as jnp
  import optax
  from brax.training import gradients, types
  from brax.training.acme import running_statistics, specs
  from brax.training.agents.sac import losses as sac_losses
  from brax.training.agents.sac import networks as sac_networks
  obs_size, action_size = family.obs_size, family.action_size
  net = sac_networks.make_sac_networks(
      obs_size, action_size, preprocess_observations_fn=running_statistics.normalize,
      hidden_layer_sizes=tuple(config.critic_widths))
  alpha_loss, critic_loss, actor_loss = sac_losses.make_losses(
      sac_network=net, reward_scaling=1.0, discounting=config.gamma, action_size=action_size)
  opt = optax.adam(config.actor_lr)
  alpha_update, critic_update, actor_update = (
      gradients.gradient_update_fn(loss, opt, pmap_axis_name=None)
      for loss in (alpha_loss, critic_loss, actor_loss))
  normalizer = running_statistics.init_state(specs.Array((obs_size,), jnp.dtype('float32')))
  policy, q = net.policy_network.init(jax.random.PRNGKey(0)), net.q_network.init(
      jax.random.PRNGKey(1))
  log_alpha = jnp.asarray(0.0)
  state = (policy, q, q, log_alpha, opt.init(policy), opt.init(q), opt.init(log_alpha))
  b = _batches(jax.random.PRNGKey(3), config.grad_updates_per_step, config.batch_size,
               obs_size, action_size)
  transitions = types.Transition(
      observation=b.obs, action=b.action, reward=b.reward, discount=1 - b.terminal,
      next_observation=b.next_obs,
      extras={'state_extras': {'truncation': 0 * b.reward}, 'policy_extras': {}})

  def sgd_step(carry, t):   # brax's sgd_step, its TrainingState as a tuple
    (policy, q, target_q, log_alpha, policy_opt, q_opt, alpha_opt), key = carry
    key, key_alpha, key_critic, key_actor = jax.random.split(key, 4)
    a_loss, new_log_alpha, alpha_opt = alpha_update(log_alpha, policy, normalizer, t,
                                                    key_alpha, optimizer_state=alpha_opt)
    alpha = jnp.exp(log_alpha)
    c_loss, new_q, q_opt = critic_update(q, policy, normalizer, target_q, alpha, t,
                                         key_critic, optimizer_state=q_opt)
    p_loss, policy, policy_opt = actor_update(policy, normalizer, q, alpha, t, key_actor,
                                              optimizer_state=policy_opt)
    target_q = jax.tree.map(lambda x, y: x * (1 - config.tau) + y * config.tau, target_q,
                            new_q)
    return ((policy, new_q, target_q, new_log_alpha, policy_opt, q_opt, alpha_opt), key), (
        c_loss, p_loss, a_loss)

  def updates(state, transitions, key):
    return jax.lax.scan(sgd_step, (state, key), transitions)

  args = (state, transitions, jax.random.PRNGKey(0))
  return jax.jit(updates).lower(*args).compile(), args


def iteration_ms(family, config):
  """Our training iteration after warm-up, with and without updates, in ms, and our eval s
  (bench_learners.chunk_timer on one train task)."""
  ours = bench.chunk_timer(config, family, 1, eval_calls=3)()
  no_updates = bench.chunk_timer(config.replace(grad_updates_per_step=0), family, 1)()
  return {'ours': config.num_envs / ours['sps'] * 1e3,
          'ours_no_updates': config.num_envs / no_updates['sps'] * 1e3,
          'eval_s': ours['eval_s']}


def brax_eval_s(family, config, one_task):
  import jax
  import jax.numpy as jnp
  from brax import envs
  from brax.training import acting
  from brax.training.acme import running_statistics, specs
  from brax.training.agents.sac import networks as sac_networks
  env = bench.FixedTaskEnv(family.env, jax.tree.map(lambda x: x[0], one_task))
  net = sac_networks.make_sac_networks(
      env.observation_size, env.action_size,
      preprocess_observations_fn=running_statistics.normalize,
      hidden_layer_sizes=tuple(config.critic_widths))
  evaluator = acting.Evaluator(
      envs.training.wrap(env, episode_length=family.episode_length, action_repeat=1),
      functools.partial(sac_networks.make_inference_fn(net), deterministic=True),
      num_eval_envs=config.eval_episodes, episode_length=family.episode_length,
      action_repeat=1, key=jax.random.PRNGKey(0))
  params = (running_statistics.init_state(specs.Array((env.observation_size,),
                                                      jnp.dtype('float32'))),
            net.policy_network.init(jax.random.PRNGKey(0)))
  evaluator.run_evaluation(params, {})   # compiles
  return _median_ms(lambda p: evaluator.run_evaluation(p, {}), params, calls=3) / 1e3


def main(argv):
  del argv
  family, one_task, results = bench.setup(
      ('family', 'num_envs', 'batch_size', 'updates', 'widths', 'eval_envs', 'seed', 'calls',
       'rounds'))
  chunk = 256 * FLAGS.num_envs
  config = bench._learner_config('all', 4 * chunk, chunk, warmup=chunk)
  programs = ours_updates(family, config)
  brax_error = None
  try:   # brax.training's pieces; its train loop needs jax < 0.10 (google/brax#671)
    programs['brax'] = brax_update(family, config)
  except Exception as e:  # noqa: BLE001  recorded, and ours still measured
    brax_error = results['brax_error'] = f'{type(e).__name__}: {e}'.splitlines()[0][:300]
  results['hlo'] = {name: _hlo_counts(compiled) for name, (compiled, _) in programs.items()}
  rounds = {name: [] for name in programs}
  for _ in range(FLAGS.rounds):
    for name, (compiled, args) in programs.items():
      rounds[name].append(_median_ms(compiled, *args, calls=FLAGS.calls))
  results['update_ms'] = {name: statistics.median(ms) for name, ms in rounds.items()}
  results['update_ms_rounds'] = rounds
  results['iteration_ms'] = iteration_ms(family, config)
  results['sim_limit_ms'] = FLAGS.num_envs / bench.sim_limit(family, FLAGS.num_envs) * 1e3
  results['eval_s'] = {'ours': results['iteration_ms'].pop('eval_s'),
                       'brax': None if brax_error else brax_eval_s(family, config, one_task)}
  bench.write(results, _table(results, brax_error), FLAGS.profile_out)


def _table(results, brax_error) -> str:
  u, it, ev = results['update_ms'], results['iteration_ms'], results['eval_s']
  return '\n'.join([
      f"{FLAGS.updates} updates: ours {u['ours_task_axis']:.2f} ms with the task axis, "
      f"{u['ours_one_task']:.2f} ms without; brax.training "
      + (brax_error or f"{u['brax']:.2f} ms"),
      f"our iteration {it['ours']:.2f} ms, without updates {it['ours_no_updates']:.2f} ms; "
      f"{FLAGS.num_envs} random env steps {results['sim_limit_ms']:.2f} ms",
      f"eval: ours {ev['ours']:.2f} s, brax "
      + ('not measured' if ev['brax'] is None else f"{ev['brax']:.2f} s"),
      f"hlo: {results['hlo']}"])

if __name__ == '__main__':
  app.run(main)

r"""`make bench`, second line: our PPO against brax.training's PPO, and PPO task scaling.

Measured in one process on one machine, written to `--out` (JSON) and printed:
  ppo_vs_brax       our PPO (mode 'all', random init) vs brax.training.agents.ppo
                    on the same Brax env (bench_learners.FixedTaskEnv) and one
                    cheetah_vel task (target velocity in 'task'), at equal
                    settings: num_envs, unroll_length, minibatches (brax
                    batch_size = num_envs / minibatches: one unroll per env per
                    iteration), epochs, relu policy/value widths, tanh-Gaussian,
                    env steps, lr, gamma, gae_lambda, clip eps, entropy and value
                    coefs, no grad clip, advantage and obs normalisation, reward
                    scale 1, eval episodes, deterministic eval. Both bootstrap at
                    the time limit: ours through the true next obs, brax with
                    bootstrap_on_timeout=True (reward += gamma V(s_t); `_TimeOut`
                    moves brax's 'truncation' into the 'time_out' key it reads).
                    Steady steps/s, ratio ours/brax, final eval return, compile s
                    (medians of `--repeats` alternating runs); sim_limit_sps at
                    num_envs envs (bench_learners.sim_limit);
  ppo_task_scaling  our PPO in mode 'adapters' on K tasks in one jitted call:
                    aggregate env steps/s of the training chunk alone (median of
                    `--scaling_repeats` chunks of `--scaling_chunk` env steps per
                    task, after a first one), compile s, sim limit at K*num_envs.

Timing, the same for both learners (`_timing`): wall clock at the call of train
and at every eval callback after it. Steady steps/s = env steps between the 2nd
and the last callback / time between them (evaluation included); compile_s =
time to the 2nd callback - two steady intervals. Two, not bench_learners' one:
brax.training 0.14.2 on jax 0.9.2 compiles its training epoch again on its 2nd
call and its evaluator again after the 1st epoch (the normaliser's std_eps
loses its weak type), so its 2nd interval is compile time too. Flags shared
with bench_learners (num_envs, steps, ...) get PPO defaults; SAC-only ones are
ignored.
"""

from __future__ import annotations

import functools
import os
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.bench_learners import (  # noqa: E402
    FLAGS, FixedTaskEnv, _init_params, _num, _steady, base_sim_limit, bench_turns, chunk_timer,
    prepare_task_scaling, scaling_table, setup, versus, versus_table, write)

flags.DEFINE_integer('unroll_length', 32, 'PPO unroll length.')
flags.DEFINE_integer('minibatches', 4, 'Minibatches per epoch (each num_envs / minibatches envs).')
flags.DEFINE_integer('epochs', 4, 'Passes over each rollout.')
flags.DEFINE_float('lr', 3e-4, 'Adam learning rate.')
flags.DEFINE_float('gamma', 0.99, 'Discount.')
flags.DEFINE_float('gae_lambda', 0.95, 'GAE lambda.')
flags.DEFINE_float('clip_eps', 0.2, 'PPO clip epsilon.')
flags.DEFINE_float('entropy_coef', 1e-3, 'Entropy coefficient.')
flags.DEFINE_float('value_coef', 0.5, 'Value loss coefficient (x 0.5 mean squared error).')
flags.DEFINE_float('loc_gain', None, "Our policy's output-adapter mean gain (policy.PolicyConfig"
                   ".loc_gain); default: --config.ppo.loc_gain's default.")
flags.DEFINE_integer('sim_steps', 32, 'Steps per rollout of the sim_limit measurements.')
for _name, _value in (('num_envs', 32), ('steps', 98_304), ('num_evals', 6),
                      ('scaling_chunk', 1024), ('out', 'runs/bench/ppo.json')):
  FLAGS.set_default(_name, _value)

VS_BRAX = ('family', 'num_envs', 'unroll_length', 'minibatches', 'epochs', 'widths', 'steps',
           'num_evals', 'eval_envs', 'lr', 'gamma', 'gae_lambda', 'clip_eps', 'entropy_coef',
           'value_coef')
SETTINGS = VS_BRAX + ('loc_gain', 'ks', 'scaling_chunk', 'scaling_repeats', 'sim_steps', 'repeats',
                      'seed')


def _recorder(read_return):
  """(times, steps, returns, progress_fn): wall clock from now and at every eval after step 0."""
  times, steps, returns = [time.perf_counter()], [0], []

  def progress(step, metrics):
    if step > 0:   # brax also reports its initial eval, before training
      times.append(time.perf_counter())
      steps.append(step)
      returns.append(read_return(metrics))

  return times, steps, returns, progress


def _timing(times, steps, returns, **extra):
  """Steady steps/s after the 2nd callback and compile_s (see the module docstring)."""
  sps = _steady(times[1:], steps[1:])[0]
  logging.info('run: %.1fs, %.0f steady env steps/s', times[-1] - times[0], sps)
  return dict(sps=sps, compile_s=max(0.0, times[2] - times[0] - 2 * (steps[2] - steps[1]) / sps),
              final_return=returns[-1], returns=returns, steps=steps[1:], **extra)


def _ppo_config(mode, total, eval_every):
  from apb_jax.learners import PPOConfig
  from apb_jax.policy import PolicyConfig
  from apb_jax.config_fields import FIELDS
  widths = tuple(map(int, FLAGS.widths))
  loc_gain = FIELDS['ppo']['loc_gain'].default if FLAGS.loc_gain is None else FLAGS.loc_gain
  return PPOConfig(
      algo='ppo', mode=mode, policy=PolicyConfig(widths=widths, loc_gain=loc_gain),
      value_widths=widths,
      total_steps=total, num_envs=FLAGS.num_envs, unroll_length=FLAGS.unroll_length,
      eval_every=eval_every, eval_episodes=FLAGS.eval_envs, epochs=FLAGS.epochs,
      num_minibatches=FLAGS.minibatches, lr=FLAGS.lr, max_grad_norm=0.0, gamma=FLAGS.gamma,
      gae_lambda=FLAGS.gae_lambda, clip_eps=FLAGS.clip_eps, value_coef=FLAGS.value_coef,
      entropy_coef=FLAGS.entropy_coef, normalize_advantage=True, reward_scale=1.0,
      normalize_obs=True)


def run_ours(family, tasks, seed):
  import jax

  from apb_jax.learners import make_train
  config = _ppo_config('all', FLAGS.steps, FLAGS.steps // FLAGS.num_evals)
  params = _init_params(family, config, 1, seed)
  trainer = make_train(config, family)
  times, steps, returns, progress = _recorder(lambda m: float(m['eval_return'].mean()))
  result = trainer.train(jax.random.PRNGKey(seed + 2), tasks, params, progress_fn=progress,
                         show_progress=False)
  return _timing(times, steps, returns, aot_compile_s=result.compile_s)


def _timeout_wrap(env, **kw):
  """brax.envs.training.wrap, then 'truncation' -> 'time_out' (for bootstrap_on_timeout)."""
  import jax.numpy as jnp
  from brax.envs import training
  from brax.envs.base import Wrapper

  class _TimeOut(Wrapper):
    def reset(self, rng):
      state = self.env.reset(rng)
      state.info['time_out'] = jnp.zeros_like(state.info['truncation'])
      return state

    def step(self, state, action):
      state = self.env.step(state, action)
      state.info['time_out'] = state.info['truncation']
      state.info['truncation'] = jnp.zeros_like(state.info['truncation'])
      return state

  return _TimeOut(training.wrap(env, **kw))


def run_brax(family, task, seed):
  import jax
  from brax.training.agents.ppo import networks as ppo_networks
  from brax.training.agents.ppo import train as brax_ppo
  from flax import linen
  env = FixedTaskEnv(family.env, jax.tree.map(lambda x: x[0], task))
  times, steps, returns, progress = _recorder(lambda m: float(m['eval/episode_reward']))
  brax_ppo.train(
      environment=env, num_timesteps=FLAGS.steps, episode_length=family.episode_length,
      wrap_env_fn=_timeout_wrap, num_envs=FLAGS.num_envs, num_eval_envs=FLAGS.eval_envs,
      learning_rate=FLAGS.lr, entropy_cost=FLAGS.entropy_coef, discounting=FLAGS.gamma,
      unroll_length=FLAGS.unroll_length, batch_size=FLAGS.num_envs // FLAGS.minibatches,
      num_minibatches=FLAGS.minibatches, num_updates_per_batch=FLAGS.epochs,
      normalize_observations=True, reward_scaling=1.0, clipping_epsilon=FLAGS.clip_eps,
      gae_lambda=FLAGS.gae_lambda, max_grad_norm=None, normalize_advantage=True,
      vf_loss_coefficient=FLAGS.value_coef, bootstrap_on_timeout=True, seed=seed,
      num_evals=FLAGS.num_evals + 1, deterministic_eval=True,
      network_factory=functools.partial(
          ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=tuple(map(int, FLAGS.widths)),
          value_hidden_layer_sizes=tuple(map(int, FLAGS.widths)), activation=linen.relu),
      progress_fn=progress)
  return _timing(times, steps, returns)


def scaling_timer(family, k):
  """The adapters-mode PPO training chunk over K tasks, compiled; returns timed() -> figures."""
  n = FLAGS.scaling_repeats + 1
  return chunk_timer(_ppo_config('adapters', FLAGS.scaling_chunk * n, FLAGS.scaling_chunk),
                     family, k)


def main(argv):
  del argv
  family, one_task, results = setup(SETTINGS)
  scaling = prepare_task_scaling(family, scaling_timer, FLAGS.sim_steps)
  with bench_turns.turn() as turn:   # alone on the device from here with --turns
    entry = {'sim_limit_sps': base_sim_limit(family, FLAGS.sim_steps),
             'settings': dict(
                 {k: FLAGS[k].value for k in VS_BRAX}, max_grad_norm=None, reward_scaling=1.0,
                 normalize_obs=True, normalize_advantage=True, deterministic_eval=True,
                 activation='relu', brax_batch_size=FLAGS.num_envs // FLAGS.minibatches,
                 brax_bootstrap_on_timeout=True, episode_length=family.episode_length)}
    logging.info('sim limit: %s env steps/s', entry['sim_limit_sps'])
    if FLAGS.repeats:   # --repeats=0: task scaling alone (e.g. a short device lease)
      entry.update(versus(lambda seed: run_ours(family, one_task, seed),
                          lambda seed: run_brax(family, one_task, seed)))
    results['ppo_vs_brax'] = entry
    results['ppo_task_scaling'] = scaling()
  results['turn'] = turn
  write(results, _table(results))


def _table(r):
  e, s = r['ppo_vs_brax'], r['settings']
  lines = [f"PPO bench on {r['device']} x{r['device_count']} (jax {r['jax']}), {s['family']} "
           f"task {r['task']}, num_envs {s['num_envs']}, unroll {s['unroll_length']}, "
           f"{s['minibatches']} minibatches x {s['epochs']} epochs, {s['steps']} env steps",
           f"sim limit ({s['num_envs']} envs): {_num(e['sim_limit_sps'])} env steps/s"]
  if s['repeats']:
    lines += versus_table(e, 'PPO', s['repeats'])
  return '\n'.join(lines + scaling_table(r['ppo_task_scaling']))


if __name__ == '__main__':
  app.run(main)

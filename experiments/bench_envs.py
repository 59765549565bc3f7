r"""Env throughput per task family: compile time apart from steps per second.

For each family it measures
  * `compile_s`: lowering + compiling jit(reset) and jit(step) for one env
    (the persistent compilation cache is off here, so this is a cold compile);
  * for each K, a jitted `lax.scan` of `--steps` vmapped steps over K tasks
    (one env per task, uniform random actions, auto-reset of ended episodes
    as in the learners): its compile seconds and the
    median env steps/s (K * steps / wall time) over `--repeats` timed runs,
    each from a fresh reset.

    python experiments/bench_envs.py --ks=1,16,128 --out=runs/bench/envs.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_list('families', None, 'Families to bench (default: all).')
flags.DEFINE_list('ks', ['1', '16', '128'], 'Numbers of tasks vmapped at once.')
flags.DEFINE_integer('steps', 400, 'Env steps per timed rollout (two 200-step episodes).')
flags.DEFINE_integer('repeats', 3, 'Timed rollouts per setting (median is reported).')
flags.DEFINE_string('backend', 'mjx', 'Brax physics backend.')
flags.DEFINE_string('out', 'runs/bench/envs.json', 'Where to write the JSON results.')


def _timed(fn, *args):
  import jax
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - start


def bench_family(name, ks, steps, repeats, backend):
  import jax
  import jax.numpy as jnp

  from apb_jax import tasks
  from apb_jax.tasks.base import random_rollout

  family = tasks.make(name, backend=backend)
  env = family.env
  one = jax.tree.map(lambda x: x[0], family.sample(jax.random.PRNGKey(0), 1, 'train'))
  start = time.perf_counter()
  state = jax.jit(env.reset).lower(jax.random.PRNGKey(0), one).compile()(
      jax.random.PRNGKey(0), one)
  jax.jit(env.step).lower(state, jnp.zeros(env.action_size)).compile()
  result = {'compile_s': time.perf_counter() - start, 'per_k': {}}

  vreset = jax.jit(jax.vmap(env.reset))

  def rollout(state, rng):
    # Auto-reset as the learners do: without it, fallen robots sink through
    # the floor (Brax torsos do not collide with it) and step unrealistically fast.
    return random_rollout(env, state, rng, steps)[0]

  for k in ks:
    task_batch = family.sample(jax.random.PRNGKey(1), k, 'train')
    state = vreset(jax.random.split(jax.random.PRNGKey(2), k), task_batch)
    start = time.perf_counter()
    run = jax.jit(rollout).lower(state, jax.random.PRNGKey(3)).compile()
    compile_s = time.perf_counter() - start
    sps = []
    for r in range(repeats):
      state = vreset(jax.random.split(jax.random.PRNGKey(10 + r), k), task_batch)
      jax.block_until_ready(state)
      _, wall = _timed(run, state, jax.random.PRNGKey(20 + r))
      sps.append(k * steps / wall)
    result['per_k'][str(k)] = {
        'compile_s': compile_s, 'env_steps_per_s': statistics.median(sps),
        'all_env_steps_per_s': sps}
    logging.info('%-14s K=%-4d compile %5.1fs  %9.0f env steps/s (median of %d)',
                 name, k, compile_s, statistics.median(sps), repeats)
  return result


def main(argv):
  del argv
  import jax

  from apb_jax import tasks

  names = FLAGS.families or tasks.names()
  ks = [int(k) for k in FLAGS.ks]
  results = {
      'device': str(jax.devices()[0]), 'platform': jax.default_backend(),
      'jax': jax.__version__, 'cpu': platform.processor() or platform.machine(),
      'cpu_count': os.cpu_count(), 'backend': FLAGS.backend, 'steps': FLAGS.steps,
      'repeats': FLAGS.repeats, 'families': {},
  }
  for name in names:
    results['families'][name] = bench_family(
        name, ks, FLAGS.steps, FLAGS.repeats, FLAGS.backend)
  os.makedirs(os.path.dirname(FLAGS.out) or '.', exist_ok=True)
  with open(FLAGS.out, 'w') as f:
    json.dump(results, f, indent=2)

  header = f"{'family':14s} {'compile reset+step':>18s}" + ''.join(
      f'  {"K=" + str(k) + " steps/s":>14s}' for k in ks)
  print(f"\nenv throughput on {results['device']} (jax {results['jax']}, "
        f"{FLAGS.backend} backend)\n{header}")
  for name, r in results['families'].items():
    print(f"{name:14s} {r['compile_s']:17.1f}s" + ''.join(
        f"  {r['per_k'][str(k)]['env_steps_per_s']:14.0f}" for k in ks))
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)

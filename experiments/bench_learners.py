r"""`make bench`: our SAC against brax.training's SAC, and task scaling.

Measured in one process on one machine, written to `--out` (JSON) and printed:
  sim_limit_sps  raw vmapped env steps/s of the family at the learner's batch
                 (num_envs; and K * num_envs for each K of task_scaling);
  sac_vs_brax    our SAC (mode 'all', random init) vs brax.training.agents.sac
                 on the same Brax env and one fixed task, at equal settings:
                 widths, batch size, parallel envs, updates per step, env
                 steps, learning rate, discount, tau, replay sizes, eval envs;
  task_scaling   our SAC in mode 'adapters' on K tasks in one jitted call:
                 aggregate env steps/s of the training chunk alone (median of
                 `--scaling_repeats` timed chunks after a first, warm-up one;
                 compile_s is the ahead-of-time compile of chunk + evaluation).
Every K and its ceiling compile before anything is timed; with --turns several
such processes share one device and take turns to time (bench_turns.py).

Timing, the same for both learners: wall-clock time is taken at every
progress callback (one per eval). Steady steps/s = env steps between the
second and the last callback / time between them (evaluation included for
both); compile_s = time of the first interval - one steady interval.
brax.training needs jax < 0.10 (google/brax#671); where it cannot run, the
brax side is recorded as an error and the rest is still measured.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import bench_turns  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('family', 'cheetah_vel', 'Task family.')
flags.DEFINE_integer('num_envs', 16, 'Parallel envs per task.')
flags.DEFINE_integer('batch_size', 256, 'SGD batch size.')
flags.DEFINE_integer('updates', 4, 'Gradient updates per env iteration (num_envs steps).')
flags.DEFINE_list('widths', ['256', '256'], 'Actor and critic hidden widths.')
flags.DEFINE_integer('steps', 24576, 'Env steps per task for sac_vs_brax.')
flags.DEFINE_integer('num_evals', 6, 'Evals over the run; steps / num_evals must be a multiple of num_envs.')
flags.DEFINE_integer('eval_envs', 4, 'Eval episodes.')
flags.DEFINE_list('ks', ['1', '8', '64'], 'Task counts for task_scaling.')
flags.DEFINE_integer('scaling_chunk', 512, 'Env steps per task in one timed task_scaling chunk.')
flags.DEFINE_integer('scaling_repeats', 3, 'Timed chunks per K (median reported).')
flags.DEFINE_integer('repeats', 2, 'Runs of each learner in sac_vs_brax (alternating; medians).')
flags.DEFINE_integer('seed', 0, 'Seed.')
flags.DEFINE_bool('brax', True, 'Also run brax.training SAC.')
flags.DEFINE_bool('ceiling', True, 'Measure the raw simulator ceilings (one compile per batch '
                  'size; --noceiling saves those minutes on a short device lease).')
flags.DEFINE_string('out', 'runs/bench/results.json', 'Output JSON.')


def _steady(times, steps):
  """(steady steps/s, compile_s) from callback wall times and env step counts."""
  if len(times) < 3:
    raise ValueError('need >= 3 progress callbacks; raise --num_evals.')
  intervals = [b - a for a, b in zip(times[1:-1], times[2:], strict=True)]
  sps = (steps[-1] - steps[1]) / (times[-1] - times[1])
  return sps, max(0.0, (times[1] - times[0]) - statistics.median(intervals))


_CEILINGS = {}   # (family name, batch, n_steps) -> measure(): K = 1 of task_scaling is num_envs again


def sim_limit(family, batch, n_steps=200):
  """Random-action env steps/s at `batch` envs, with the learners' auto-reset (None with
  --noceiling); compiled and measured once per (family, batch, n_steps) in a process."""
  return sim_limit_timer(family, batch, n_steps)()


def sim_limit_timer(family, batch, n_steps=200, repeats=3):
  """Compiles sim_limit's rollout now; returns measure() -> its env steps/s (measured on the
  first call, remembered after), so the compile can happen before this process's turn."""
  if not FLAGS.ceiling:
    return lambda: None
  key = (family.name, batch, n_steps)   # the bench makes each family once, by name
  if key not in _CEILINGS:
    _CEILINGS[key] = functools.cache(_compile_sim_limit(family, batch, n_steps, repeats))
  return _CEILINGS[key]


def _compile_sim_limit(family, batch, n_steps, repeats):
  import jax

  from apb_jax.tasks.base import random_rollout
  env = family.env
  tasks = family.sample(jax.random.PRNGKey(0), batch, 'train')
  state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(1), batch), tasks)

  def rollout(state, rng):
    return random_rollout(env, state, rng, n_steps)[0]

  rollout = jax.jit(rollout).lower(state, jax.random.PRNGKey(2)).compile()

  def measure():
    jax.block_until_ready(rollout(state, jax.random.PRNGKey(2)))
    rates = []
    for r in range(repeats):
      t = time.perf_counter()
      jax.block_until_ready(rollout(state, jax.random.PRNGKey(3 + r)))
      rates.append(batch * n_steps / (time.perf_counter() - t))
    return statistics.median(rates)

  return measure


def base_sim_limit(family, n_steps=200):
  """sim_limit at num_envs, the K = 1 ceiling: measured where --ks holds 1 or the versus-
  brax.training comparison runs; None in the other processes of a split bench (--turns),
  where it would only repeat K = 1's process's measurement."""
  if FLAGS.repeats or '1' in FLAGS.ks or not FLAGS.turns:
    return sim_limit(family, FLAGS.num_envs, n_steps)
  return None


def _learner_config(mode, total, eval_every, warmup):
  from apb_jax.learners import LearnerConfig
  from apb_jax.policy import PolicyConfig
  widths = tuple(int(w) for w in FLAGS.widths)
  return LearnerConfig(
      algo='sac', mode=mode, policy=PolicyConfig(widths=widths), critic_widths=widths,
      total_steps=total, num_envs=FLAGS.num_envs, eval_every=eval_every,
      eval_episodes=FLAGS.eval_envs, warmup_steps=warmup,
      grad_updates_per_step=FLAGS.updates, batch_size=FLAGS.batch_size,
      buffer_size=max(total, FLAGS.batch_size), gamma=0.99, tau=0.005,
      actor_lr=3e-4, critic_lr=3e-4, alpha_lr=3e-4, normalize_obs=True)


def _init_params(family, config, k, seed):
  import jax

  from apb_jax import adapt, policy
  return adapt.init_params(jax.random.PRNGKey(seed + 1),
                           policy.init_backbone(jax.random.PRNGKey(seed), config.policy), k,
                           family.obs_size, family.action_size, config.policy)


def run_ours(family, tasks, mode, total, n_evals, seed):
  import jax

  from apb_jax.learners import make_train
  eval_every = total // n_evals
  config = _learner_config(mode, total, eval_every, warmup=eval_every)
  k = jax.tree.leaves(tasks)[0].shape[0]
  params = _init_params(family, config, k, seed)
  times, steps, returns = [time.perf_counter()], [0], []

  def progress(step, metrics):
    times.append(time.perf_counter())
    steps.append(step)
    returns.append(float(metrics['eval_return'].mean()))

  trainer = make_train(config, family)
  t0 = time.perf_counter()
  trainer.train(jax.random.PRNGKey(seed + 2), tasks, params, progress_fn=progress,
                show_progress=False)
  logging.info('ours %s K=%d: %.1fs', mode, k, time.perf_counter() - t0)
  sps, compile_s = _steady(times, steps)
  return {'sps': sps * k, 'sps_per_task': sps, 'compile_s': compile_s,
          'final_return': returns[-1], 'returns': returns, 'steps': steps[1:]}


def scaling_timer(family, k):
  """The adapters-mode SAC training chunk over K tasks, compiled; returns timed() -> figures."""
  n = FLAGS.scaling_repeats + 1
  return chunk_timer(_learner_config('adapters', FLAGS.scaling_chunk * n, FLAGS.scaling_chunk,
                                     warmup=0), family, k)


def chunk_timer(config, family, k, eval_calls=0):
  """One learner on K train tasks, initialised and compiled now; returns timed(), which runs
  its `config.num_chunks` chunks of `config.eval_every` env steps per task and returns
  {sps: K * chunk / median wall of all chunks but the first, compile_s, chunk_walls_s,
  state_mib_per_task (the learner state's bytes per task: replay buffers dominate),
  peak_device_mib (the process's peak device bytes so far where the backend reports it,
  GPU/TPU; None on CPU)}, and with `eval_calls` eval_s: the median wall of that many
  evaluations of the trained state."""
  import jax
  import numpy as np

  from apb_jax.learners import make_train, memory
  trainer = make_train(config, family)
  state = trainer.init(jax.random.PRNGKey(FLAGS.seed), family.sample(
      jax.random.PRNGKey(200), k, 'train'), _init_params(family, config, k, FLAGS.seed))
  compile_s = trainer.compile(state)

  def timed():
    s, walls = state, []
    for chunk in range(config.num_chunks):
      t = time.perf_counter()
      s, metrics = trainer.chunk(s, np.int32(chunk))
      jax.block_until_ready(metrics)
      walls.append(time.perf_counter() - t)
    peak = memory.memory_stats(jax.devices()[0]).get('peak_bytes_in_use')
    out = {'sps': k * config.eval_every / statistics.median(walls[1:]), 'compile_s': compile_s,
           'chunk_walls_s': walls, 'state_mib_per_task': memory.state_bytes(s) / k / 2**20,
           'peak_device_mib': None if peak is None else peak / 2**20}
    if eval_calls:
      evals = []
      for _ in range(eval_calls):
        t = time.perf_counter()
        jax.block_until_ready(trainer.evaluate(s))
        evals.append(time.perf_counter() - t)
      out['eval_s'] = statistics.median(evals)
    return out

  return timed


class FixedTaskEnv:
  """Our family's env at one task, as a plain brax.envs.Env (task reward and
  physics from `TaskEnv.transition`; brax.training's wrappers keep the episode)."""

  def __new__(cls, task_env, task):
    from brax.envs.base import Env

    class _Env(Env):
      def reset(self, rng):
        return task_env.reset(rng, task)

      def step(self, state, action):
        return task_env.transition(state, action)

      @property
      def observation_size(self):
        return task_env.observation_shape(task)[-1]

      @property
      def action_size(self):
        return task_env.action_size

      @property
      def backend(self):
        return task_env.backend

    return _Env()


def run_brax(family, task, total, n_evals, seed):
  import jax
  from brax.training.agents.sac import networks as sac_networks
  from brax.training.agents.sac import train as brax_sac
  widths = tuple(int(w) for w in FLAGS.widths)
  env = FixedTaskEnv(family.env, jax.tree.map(lambda x: x[0], task))
  times, steps, returns = [], [], []

  def progress(step, metrics):
    times.append(time.perf_counter())
    steps.append(step)
    returns.append(float(metrics['eval/episode_reward']))

  eval_every = total // n_evals
  t0 = time.perf_counter()
  brax_sac.train(
      environment=env, num_timesteps=total, episode_length=family.episode_length,
      num_envs=FLAGS.num_envs, num_eval_envs=FLAGS.eval_envs, learning_rate=3e-4,
      discounting=0.99, seed=seed, batch_size=FLAGS.batch_size,
      num_evals=n_evals + 1, normalize_observations=True, reward_scaling=1.0, tau=0.005,
      min_replay_size=eval_every, max_replay_size=max(total, FLAGS.batch_size),
      grad_updates_per_step=FLAGS.updates, deterministic_eval=True,
      network_factory=lambda *a, **kw: sac_networks.make_sac_networks(
          *a, hidden_layer_sizes=widths, **kw),
      progress_fn=progress)
  logging.info('brax: %.1fs', time.perf_counter() - t0)
  sps, compile_s = _steady(times, steps)
  return {'sps': sps, 'compile_s': compile_s, 'final_return': returns[-1],
          'returns': returns, 'steps': steps}


def main(argv):
  del argv
  family, one_task, results = setup(
      ('family', 'num_envs', 'batch_size', 'updates', 'widths', 'steps', 'num_evals',
       'eval_envs', 'ks', 'scaling_chunk', 'scaling_repeats', 'repeats', 'seed'))
  scaling = prepare_task_scaling(family, scaling_timer)
  with bench_turns.turn() as turn:   # alone on the device from here with --turns
    results['sim_limit_sps'] = {'batch': FLAGS.num_envs, 'sps': base_sim_limit(family)}
    logging.info('sim limit: %s env steps/s', results['sim_limit_sps']['sps'])
    if FLAGS.repeats:   # --repeats=0: task scaling alone (e.g. a short device lease)
      results['sac_vs_brax'] = versus(
          lambda seed: run_ours(family, one_task, 'all', FLAGS.steps, FLAGS.num_evals, seed),
          lambda seed: run_brax(family, one_task, FLAGS.steps, FLAGS.num_evals, seed))
    results['task_scaling'] = scaling()
  results['turn'] = turn
  write(results, _table(results))


def versus(ours, brax) -> dict:
  """`--repeats` alternating runs of ours(seed) and (with --brax) brax(seed), so drifts in
  machine load hit both: medians of steps/s, final return and compile s, ratio ours/brax,
  and brax.training's error where it cannot run (jax >= 0.10)."""
  runs, brax_error = {'ours': [], 'brax': []}, None
  for r in range(FLAGS.repeats):
    runs['ours'].append(ours(FLAGS.seed + r))
    if FLAGS.brax and brax_error is None:
      try:
        runs['brax'].append(brax(FLAGS.seed + r))
      except Exception as e:  # noqa: BLE001 -- e.g. brax.training on jax >= 0.10
        brax_error = f'{type(e).__name__}: {e}'.splitlines()[0][:300]
        logging.warning('brax.training failed: %s', brax_error)
  entry = {}
  for name, rs in runs.items():
    if rs:
      entry.update({f'{name}_sps': statistics.median(x['sps'] for x in rs),
                    f'{name}_return': statistics.median(x['final_return'] for x in rs),
                    f'{name}_compile_s': statistics.median(x['compile_s'] for x in rs),
                    f'{name}_runs': rs})
  if runs['brax']:
    entry['ratio'] = entry['ours_sps'] / entry['brax_sps']
  if brax_error:
    entry['brax_error'] = brax_error
  return entry


def setup(setting_names):
  """(family, one fixed task [1, ...], results header: device, versions, settings, task)."""
  import jax

  from apb_jax import tasks as tasks_lib
  family = tasks_lib.make(FLAGS.family)
  one_task = family.sample(jax.random.PRNGKey(100), 1, 'train')
  return family, one_task, {
      'device': str(jax.devices()[0]), 'platform': jax.default_backend(),
      'device_count': jax.device_count(), 'jax': jax.__version__, 'cpu_count': os.cpu_count(),
      'settings': {k: FLAGS[k].value for k in setting_names},
      'task': {k: v.tolist() for k, v in one_task.items()},
  }


def prepare_task_scaling(family, scaling_timer, sim_steps=200):
  """Compiles, for each K of --ks, the learner (`scaling_timer(family, K)`) and the sim_limit
  rollout at K * num_envs; then marks this process ready (bench_turns). Returns timed() ->
  {K: the learner's figures + sim_limit_sps + speedup_vs_first}; call it in the turn.
  All Ks compile before any is timed, so a process's peak device memory is that of its
  largest K (accel_check.sh runs one K per process)."""
  try:
    timers = {k: (scaling_timer(family, k),
                  sim_limit_timer(family, k * FLAGS.num_envs, sim_steps))
              for k in (int(x) for x in FLAGS.ks)}
  finally:
    bench_turns.ready()

  def timed():
    scaling = {}
    for k, (learner, ceiling) in timers.items():
      scaling[str(k)] = dict(learner(), sim_limit_sps=ceiling())
      logging.info('K=%d: %s', k, scaling[str(k)])
    return with_speedups(scaling)

  return timed


def with_speedups(scaling: dict) -> dict:
  """`scaling` ({K: figures}, Ks in increasing order) with each K's speedup_vs_first: its
  env steps/s over the first K's."""
  base = next(iter(scaling.values()))['sps']
  for v in scaling.values():
    v['speedup_vs_first'] = v['sps'] / base
  return scaling


def merge_processes(out: str, key: str, paths: list[str]) -> dict:
  """One bench JSON (written to `out`, its table printed) from processes that each timed
  some Ks (accel_check.sh: one K per process, --turns): the first result's header, every
  K's figures under `key` ('task_scaling' or 'ppo_task_scaling') with speedup_vs_first
  against the smallest K, each process's turn, and under 'missing' the paths that wrote
  nothing (a process that failed or ran out of time; its log says why)."""
  results, scaling, turns, missing = None, {}, {}, []
  for path in paths:
    if not os.path.exists(path):
      missing.append(path)
      continue
    with open(path) as f:
      r = json.load(f)
    results = results or r   # the first path's header: K = 1's, with its ceiling, if listed first
    scaling.update(r[key])
    turns[os.path.basename(path)] = r.get('turn')
  if results is None:
    raise SystemExit(f'no bench process wrote its figures: {paths}; see their logs')
  scaling = with_speedups({k: scaling[k] for k in sorted(scaling, key=int)})
  results.update({key: scaling, 'turns': turns, 'missing': missing})
  results.pop('turn', None)
  results['settings']['ks'] = list(scaling)
  write(results, '\n'.join(scaling_table(scaling)), out)
  return results


def write(results: dict, table: str, out: str | None = None) -> None:
  """Writes `results` to `out` (default --out; JSON) and prints `table`."""
  out = out or FLAGS.out
  os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
  with open(out, 'w') as f:
    json.dump(results, f, indent=2)
  print(table)
  print(f'wrote {out}')


def _table(r):
  s = r['settings']
  lines = [f"bench on {r['device']} x{r['device_count']} (jax {r['jax']}), family "
           f"{s['family']}, num_envs {s['num_envs']}, batch {s['batch_size']}, updates/step "
           f"{s['updates']}",
           f"sim limit (batch {r['sim_limit_sps']['batch']}): {_num(r['sim_limit_sps']['sps'])} env steps/s"]
  if 'sac_vs_brax' in r:
    lines += versus_table(r['sac_vs_brax'], 'SAC', s['repeats'])
  return '\n'.join(lines + scaling_table(r['task_scaling']))


def versus_table(e: dict, algo: str, repeats: int) -> list[str]:
  """Lines of the ours-vs-brax.training table (`versus`'s entry)."""
  lines = [f"{'':10s} {'steps/s':>10s} {'compile s':>10s} {'final return':>13s}"]
  lines += [f"{f'{n} {algo}':10s} {e[n + '_sps']:10.0f} {e[n + '_compile_s']:10.1f} "
            f"{e[n + '_return']:13.1f}" for n in ('ours', 'brax') if n + '_sps' in e]
  lines.append(f"ratio ours/brax: {e['ratio']:.2f}" if 'ratio' in e else
               f"brax {algo}: not run ({e.get('brax_error', 'disabled')})")
  lines.append(f'(medians of {repeats} alternating runs each)')
  return lines


def _num(x) -> str:
  return '-' if x is None else f'{x:.0f}'


def scaling_table(scaling: dict) -> list[str]:
  """Lines of the task-scaling table (one row per K); '-' where a figure was not measured."""
  lines = [f"{'K tasks':10s} {'agg steps/s':>12s} {'x K=first':>10s} {'compile s':>10s} "
           f"{'sim limit':>10s} {'of limit':>9s} {'MiB/task':>9s} {'peak MiB':>9s}"]
  for k, v in scaling.items():
    ceiling = v['sim_limit_sps']
    share = '-' if ceiling is None else f"{v['sps'] / ceiling:.1%}"
    lines.append(f"{k:10s} {v['sps']:12.0f} {v['speedup_vs_first']:10.2f} {v['compile_s']:10.1f} "
                 f"{_num(ceiling):>10s} {share:>9s} {v['state_mib_per_task']:9.2f} "
                 f"{_num(v['peak_device_mib']):>9s}")
  return lines


if __name__ == '__main__':
  app.run(main)

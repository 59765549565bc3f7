"""The two pipeline stages every baseline has: meta-training, then adaptation on a split.

    trained = meta_stage(exp, 'meta_rl2', learner, params, family, extract)
    out = adapt_stage(exp, 'rl2', split, per_index, steps_per_index, env_steps)

`exp` is the running `experiment.Experiment` (its run directory, keys, task
sets and resumable `learner_stage`).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from apb_jax import adapt, checkpoint, policy, progress


def meta_stage(exp, name: str, learner, params, family, extract, make=None) -> dict:
  """Meta-trains (or resumes) stage `name` on the train tasks; returns what `extract(state)`
  kept of the final state, saved to checkpoints/<name>_policy/ (read back once done)."""
  path = exp.path('checkpoints', f'{name}_policy')
  if not os.path.exists(exp.path('results', f'{name}.json')):
    out, state, ckpt = exp.learner_stage(name, learner, exp.key(name), exp.tasks['train'],
                                         params, family=family, make=make,
                                         method=name.split('_', 1)[1], split='train')
    checkpoint.save_params(path, extract(state))
    exp.finish(name, out, ckpt)
  return checkpoint.restore_params(path, fix=f'delete results/{name}.json to run {name} again')


def tied_params(rng, family, policy_config, k: int, obs_size: int | None = None) -> dict:
  """One fresh policy for all K tasks: its adapters repeated on a leading [K] axis.
  `obs_size`: the policy's input size, if not the family's (e.g. PEARL's [obs, z])."""
  params = policy.init_params(rng, obs_size or family.obs_size, family.action_size,
                              policy_config)
  params['adapters'] = jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], k, axis=0),
                                    params['adapters'])
  return params


def over_runs(run_fn, rng, tasks) -> jax.Array:
  """`run_fn(rng, task)` on every run (`tasks` leaves [runs, ...]), vmapped, one key per run
  split from `rng` (so run r alone, with key r, gives the same result)."""
  runs = jax.tree.leaves(tasks)[0].shape[0]
  return jax.vmap(run_fn)(jax.random.split(rng, runs), tasks)


def value_at_budget(per_index: np.ndarray, steps, steps_per_index: int) -> np.ndarray:
  """[runs, n_evals]: at env step s the value of index min(s // steps_per_index, last).

  `per_index: [runs, n]`, e.g. RL^2's return of each episode of a trial or MAML's
  return after each inner step: the experience s allows decides which one counts.
  """
  index = np.minimum(np.asarray(steps) // steps_per_index, per_index.shape[1] - 1)
  return per_index[:, index]


def adapt_stage(exp, method: str, split: str, per_index_fn, trained, steps_per_index: int,
                env_steps_per_run: int) -> dict:
  """Stage adapt_<method>_<split>: `per_index_fn(trained, rng, tasks) -> [runs, n]` on the
  split's runs (tasks x seeds), turned into curves at APB's evaluation points.

  `trained` is an argument, not a constant of the compiled program, so both splits compile
  to the same program (the second one comes from the persistent cache)."""
  c = exp.config
  name = f'adapt_{method}_{split}'
  result_path = exp.path('results', f'{name}.json')
  if os.path.exists(result_path):
    return exp.result(name)
  tasks = adapt.repeat_tasks(exp.tasks[split], c.adapt.seeds)
  rng = exp.key(f'adapt/{split}')
  runs = jax.tree.leaves(tasks)[0].shape[0]
  _say(exp, f'{name}: one program, {runs} runs x {c.adapt.total_steps} env steps; no progress '
       'lines until it ends (a stop reruns the whole stage)')
  start = time.perf_counter()
  fn = jax.jit(per_index_fn).lower(trained, rng, tasks).compile()
  compile_s = time.perf_counter() - start
  per_index = np.asarray(fn(trained, rng, tasks))
  steps = np.arange(c.adapt.total_steps // c.adapt.eval_every + 1) * c.adapt.eval_every
  curves = value_at_budget(per_index, steps, steps_per_index)
  run_s = time.perf_counter() - start
  _say(exp, f'{name}: done in {run_s:.0f} s ({compile_s:.0f} s compiling), final eval '
       f'return {curves[:, -1].mean():.2f}')
  out = {'steps': steps.tolist(),
         'curves': curves.tolist(),
         'per_index': per_index.tolist(), 'steps_per_index': int(steps_per_index),
         'run_s': run_s, 'compile_s': compile_s,
         'env_steps': int(per_index.shape[0] * env_steps_per_run)}
  exp.finish(name, out)
  return out


def _say(exp, text: str):
  """`progress.line(text)` when the run shows progress."""
  if exp.show_progress:
    progress.line(text)

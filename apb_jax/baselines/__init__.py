"""Meta-RL baselines on the same task axis, tasks, splits, seeds and budgets as APB.

    --config.methods=apb,apb_randominit,scratch,rl2

One protocol for every method (DESIGN.md):
  * meta-training on the run's `train` tasks with `meta.total_steps *
    baselines.meta_factor` env steps per task, counting every env step the
    method takes (its exploration and context collection included);
  * adaptation on the same `test_id` / `test_ood` tasks and seeds as APB's
    methods (runs = tasks x seeds, task-major), with curves at the same
    env-step points (`adapt.eval_every`, up to `adapt.total_steps`), each
    method by its own rule:
      rl2   no gradient: trials with the hidden state. The value at env step s
            is the mean return of episode j = min(s // episode_length,
            trial_episodes - 1) of fresh trials (0-based), i.e. of the last
            episode the experience allowed so far fits before; the curve is
            flat once a whole trial fits in s.
      maml  an inner policy-gradient step on fresh episodes every num_envs x
            episode_length env steps, through the whole budget; the value at s
            is the deterministic return after s // (num_envs x episode_length)
            inner steps.
      pearl the posterior over z starts at the prior; each episode of experience
            is played with z sampled from it and folded in; the value at s is
            the deterministic return with z = the posterior mean after
            s // episode_length episodes of context.
Each rule is a `stage.Adaptation` (an episode of context, an inner step, an episode
of a trial per update): `stage.update_stage` runs it in chunks on the shared host
loop, evaluating only at the evaluation points, checkpointing after every chunk.
Each module exposes `stage_config(config, episode_length)` (its meta-training config,
built by `validate` so a bad setting stops before anything runs) and
`adapt(experiment, splits) -> [result dict]` (one per split, the schema of APB's
adapt stages: steps, curves [runs, n_evals], run_s, compile_s, env_steps; the
splits run as one call), meta-training first if its stage is not done; stages
checkpoint and resume like APB's.
"""

from __future__ import annotations

import importlib

NAMES = ('rl2', 'pearl', 'maml')


def get(name: str):
  """The module of baseline `name` (`apb_jax.baselines.<name>`)."""
  if name not in NAMES:
    raise ValueError(f'unknown meta-RL baseline {name!r}; choose one of {list(NAMES)}.')
  return importlib.import_module(f'apb_jax.baselines.{name}')

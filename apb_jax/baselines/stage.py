"""The two pipeline stages every baseline has: meta-training, then adaptation on the splits.

    trained = meta_stage(exp, 'meta_pearl', learner, params, family, extract)
    outs = update_stage(exp, 'pearl', splits, rule, trained, steps_per_update)

`exp` is the running `experiment.Experiment` (its run directory, keys, task
sets and resumable `learner_stage`).

Every baseline writes its adaptation for one run as an `Adaptation` rule: PEARL
folds in an episode of context per update, MAML takes an inner step, RL^2 plays
its trials at `init` (no gradient; its hidden state adapts) and each update
moves on to the next episode of the trial. `AdaptLoop` runs a rule on the
shared host loop (learners/loop.py), so its stage is chunked, shows progress,
checkpoints after every chunk and resumes like APB's stages, and evaluates only
at APB's evaluation points; the splits' stages run as one call
(Experiment.stacked_stage), their runs side by side. `per_update_returns` runs
the same rule with the same keys evaluating after every update (the tests'
per-episode view): at an evaluation point both give the same value.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from apb_jax import checkpoint, policy
from apb_jax.learners import loop, sharding
from apb_jax.learners.config import _Schedule
from apb_jax.tasks.base import tile


def meta_stage(exp, name: str, learner, params, family, extract, make=None) -> dict:
  """Meta-trains (or resumes) stage `name` on the train tasks; returns what `extract(state)`
  kept of the final state, saved to checkpoints/<name>_policy/ (read back once done)."""
  path = exp.path('checkpoints', f'{name}_policy')
  if not exp.done(name):
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
  params['adapters'] = tile(params['adapters'], k)
  return params


def over_runs(run_fn, rng, tasks) -> jax.Array:
  """`run_fn(rng, task)` on every run (`tasks` leaves [runs, ...]), vmapped, one key per run
  split from `rng`, or `rng` itself if it holds one per run ([runs, 2]: loop.run_keys), so
  run r alone, with key r, gives the same result."""
  runs = jax.tree.leaves(tasks)[0].shape[0]
  return jax.vmap(run_fn)(loop.run_keys(rng, runs), tasks)


def value_at_budget(per_index: np.ndarray, steps, steps_per_index: int) -> np.ndarray:
  """[runs, n_evals]: at env step s the value of index min(s // steps_per_index, last).

  `per_index: [runs, n]`, e.g. RL^2's return of each episode of a trial or MAML's
  return after each inner step: the experience s allows decides which one counts.
  """
  index = np.minimum(np.asarray(steps) // steps_per_index, per_index.shape[1] - 1)
  return per_index[:, index]


class Adaptation(NamedTuple):
  """A baseline's adaptation rule for ONE run (pure functions of `trained`, its meta-trained
  part, and `task`): `init(trained, key, task) -> carry` (`key`: the run's own key);
  `update(trained, carry, key, task) -> carry`, one update (an episode of context, an inner
  step, an episode of a trial); `evaluate(trained, carry, key, task) -> []`, the return of
  the policy the carry gives."""
  init: Callable
  update: Callable
  evaluate: Callable


def _keys(rng):
  """(update key, eval key) of one run: update i uses fold_in(update key, i), the evaluation
  after u updates fold_in(eval key, u), however the updates are chunked."""
  return jax.random.split(rng)


def per_update_returns(rule: Adaptation, trained, rng, task, n_updates: int) -> jax.Array:
  """[n_updates + 1]: the return after 0..n_updates updates (one run)."""
  k_update, k_eval = _keys(rng)

  def body(carry, i):
    ret = rule.evaluate(trained, carry, jax.random.fold_in(k_eval, i), task)
    return rule.update(trained, carry, jax.random.fold_in(k_update, i), task), ret

  carry, rets = jax.lax.scan(body, rule.init(trained, rng, task), jnp.arange(n_updates))
  last = rule.evaluate(trained, carry, jax.random.fold_in(k_eval, n_updates), task)
  return jnp.concatenate([rets, last[None]])


def per_update_table(rule: Adaptation, trained, rng, tasks, n_updates: int) -> jax.Array:
  """[runs, n_updates + 1]: `per_update_returns` on each run (`tasks` leaves [runs, ...]),
  vmapped with `over_runs`' keys, the keys `AdaptLoop` gives the same runs."""
  return over_runs(lambda r, t: per_update_returns(rule, trained, r, t, n_updates), rng, tasks)


@dataclasses.dataclass(frozen=True)
class AdaptLoopConfig(_Schedule):
  """An update-rule adaptation on the host loop: `total_steps` / `eval_every` env steps per
  run (APB's), one update per `steps_per_update` env steps, so `total_steps //
  steps_per_update` updates in all and floor(s / steps_per_update) done at env step s
  (a chunk may hold a varying number of them, so `iterations_per_chunk` does not apply)."""
  algo: str                  # the method (the progress label; one trainer per method)
  total_steps: int
  eval_every: int
  steps_per_update: int
  mode: str = 'adapt'

  @property
  def num_updates(self) -> int:
    return self.total_steps // self.steps_per_update


class AdaptState(NamedTuple):
  trained: object            # unbatched: the meta-trained part (never changes)
  carry: object              # [runs, ...]: the rule's carry
  task: dict                 # [runs, ...]
  k_update: jax.Array        # [runs, 2]
  k_eval: jax.Array          # [runs, 2]
  updates: jax.Array         # [runs]: updates done


class AdaptLoop(loop.HostLoop):
  """`rule` on K runs at once, a chunk = the updates that fall in `eval_every` env steps
  (a fixed-length scan whose steps past the chunk's end are skipped by an unbatched cond)."""

  state_axes = AdaptState(trained=None, carry=0, task=0, k_update=0, k_eval=0, updates=0)
  init_axes = (0, 0, None)

  def __init__(self, config: AdaptLoopConfig, family, rule: Adaptation):
    self.rule = rule
    super().__init__(config, family)

  def _init_args(self, rng, tasks, trained) -> tuple:
    k = jax.tree.leaves(tasks)[0].shape[0]
    return (sharding.shard_tasks(loop.run_keys(rng, k)), sharding.shard_tasks(tasks),
            sharding.replicate(trained))

  def _init_one(self, rng, task, trained) -> AdaptState:
    k_update, k_eval = _keys(rng)
    return AdaptState(trained, self.rule.init(trained, rng, task), task, k_update, k_eval,
                      jnp.int32(0))

  def _chunk_one(self, s: AdaptState, chunk_index):
    c = self.config
    start = chunk_index * c.eval_every // c.steps_per_update
    end = jnp.minimum((chunk_index + 1) * c.eval_every // c.steps_per_update, c.num_updates)

    def body(carry, j):
      i = start + j
      step = lambda x: self.rule.update(s.trained, x, jax.random.fold_in(s.k_update, i),  # noqa: E731
                                        s.task)
      return jax.lax.cond(i < end, step, lambda x: x, carry), None

    most = -(-c.eval_every // c.steps_per_update)    # ceil: the most updates one chunk holds
    carry, _ = jax.lax.scan(body, s.carry, jnp.arange(most))
    return s._replace(carry=carry, updates=end.astype(jnp.int32)), {}

  def _evaluate_one(self, s: AdaptState):
    return self.rule.evaluate(s.trained, s.carry, jax.random.fold_in(s.k_eval, s.updates), s.task)


def update_stage(exp, method: str, splits, rule: Adaptation, trained,
                 steps_per_update: int, env_steps_per_run: int | None = None) -> list:
  """Stages adapt_<method>_<split> of `splits`: `rule` on each split's runs (tasks x seeds)
  with APB's budget and evaluation points, in one call on the shared host loop (chunks,
  progress, checkpoints); returns their results in `splits`' order. `env_steps_per_run`:
  what a run spends (default its whole updates)."""
  c = exp.config
  learner = AdaptLoopConfig(algo=method, total_steps=c.adapt.total_steps,
                            eval_every=c.adapt.eval_every, steps_per_update=steps_per_update)
  todo = [(f'adapt_{method}_{split}', method, split) for split in splits
          if not exp.done(f'adapt_{method}_{split}')]
  if todo:
    exp.stacked_stage(todo, learner, trained,
                      make=lambda config, family: AdaptLoop(config, family, rule),
                      env_steps_per_run=env_steps_per_run or learner.num_updates * steps_per_update)
  return [exp.result(f'adapt_{method}_{split}') for split in splits]

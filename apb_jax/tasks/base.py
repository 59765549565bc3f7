"""Task-conditioned Brax environments and the `TaskFamily` container.

A task is a small pytree (`TaskParams`, a dict of arrays) that is passed to
`TaskEnv.reset` and then lives in `state.info['task']`. Because the task is an
ordinary traced argument, `jax.vmap(env.reset)(rngs, tasks)` runs K different
tasks in one compiled function; nothing about a task is baked into the trace.

A `TaskEnv` wraps an unmodified Brax `PipelineEnv` (its physics, observation
and healthy-termination logic) and adds three things:
  * a task-dependent reward, `reward_fn(ps0, ps1, action, task, dt)`;
  * optionally task-dependent physics, `sys_fn(sys, task) -> sys`, applied to
    the Brax `System` inside the (vmapped) step, the same mechanism Brax's own
    `DomainRandomizationVmapWrapper` uses, but driven by the traced task;
  * the episode limit. `state.done` is 1 when the episode ended for either
    reason; `state.info['truncation']` is 1 only when it ended by the time
    limit without terminating. A learner's "true terminal" flag is therefore
    `done * (1 - truncation)`: bootstrap on truncation, not on termination.

State layout (one env; vmapping adds leading axes to every leaf):
  state.obs: [obs_size]           the task is NOT in the observation
  state.reward, state.done: []    float32
  state.info['task']: TaskParams  unchanged by `step`
  state.info['steps']: [] int32   env steps taken in this episode
  state.info['truncation']: []    float32
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from typing import Any, Callable, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from brax import base as brax_base
from brax.envs.base import PipelineEnv, State

from apb_jax import programs

TaskParams = Dict[str, jax.Array]
RewardFn = Callable[[Any, Any, jax.Array, TaskParams, float], jax.Array]
SysFn = Callable[[brax_base.System, TaskParams], brax_base.System]
Sampler = Callable[[jax.Array, int], TaskParams]

SPLITS = ('train', 'test_id', 'test_ood')


@contextlib.contextmanager
def _system(env: PipelineEnv, sys: brax_base.System):
  """Temporarily makes `env` simulate `sys` (trace-time only; restores it)."""
  old = env.sys
  env.sys = sys
  try:
    yield env
  finally:
    env.sys = old


class TaskEnv:
  """A Brax env whose reward and/or physics depend on `state.info['task']`.

  `reset(rng, task)` and `step(state, action)` are pure and jittable, and
  vmappable over `(rng, task)` and `(state, action)`. Each is a `jax.jit` of this
  env's own: every program that steps the env (a learner's collection, its
  evaluation, a baseline's, at any batch shape, since vmap hands jit the unbatched
  shapes) reuses one trace of the physics instead of tracing MJX again (~10 s
  each on this CPU; measured: a second program's env trace 11.3 s -> 0.07 s).
  """

  def __init__(
      self,
      base: PipelineEnv,
      reward_fn: RewardFn,
      episode_length: int,
      sys_fn: Optional[SysFn] = None,
      name: Optional[str] = None,
  ):
    """`name`: the family's, which names the kept `reset` program (programs.py: kept only in
    launches that build the family from the config; elsewhere `observation_shape` traces)."""
    if episode_length < 1:
      raise ValueError(
          f'episode_length must be >= 1, got {episode_length}; pass a positive'
          ' episode_length to apb_jax.tasks.make.'
      )
    self.base = base
    self.reward_fn = reward_fn
    self.sys_fn = sys_fn
    self.episode_length = int(episode_length)
    self._dt = float(base.dt)  # the timestep is never task-dependent
    self.reset = jax.jit(self._reset)
    self.step = jax.jit(self._step)
    self._reset_program = programs.jit(self.reset, f'reset {name}')

  # -- sizes ---------------------------------------------------------------
  @property
  def action_size(self) -> int:
    return self.base.action_size

  @property
  def dt(self) -> float:
    return self._dt

  @property
  def backend(self) -> str:
    return self.base.backend

  @property
  def sys(self) -> brax_base.System:
    return self.base.sys

  def observation_shape(self, task: TaskParams) -> tuple:
    """Obs shape from `reset`'s output shape (no compile, no physics run): traced (1.6 s for
    an MJX env), or, in a launch that keeps programs, read from the kept reset program."""
    return self._reset_program.eval_shape(jax.random.PRNGKey(0), task).obs.shape

  # -- dynamics --------------------------------------------------------------
  def task_sys(self, task: TaskParams) -> brax_base.System:
    """The Brax System that simulates `task` (the nominal one if no sys_fn)."""
    return self.base.sys if self.sys_fn is None else self.sys_fn(
        self.base.sys, task)

  def _reset(self, rng: jax.Array, task: TaskParams) -> State:
    with _system(self.base, self.task_sys(task)) as env:
      state = env.reset(rng)
    info = dict(state.info)
    info.update(
        task=task,
        steps=jnp.zeros((), jnp.int32),
        truncation=jnp.zeros(()),
    )
    return state.replace(info=info, metrics=dict(state.metrics))

  def transition(self, state: State, action: jax.Array) -> State:
    """One step of the task's physics, reward and termination; no time limit.

    `state.done` is Brax's healthy-termination flag. `step` adds the episode
    limit on top; wrappers that keep their own episode count (e.g.
    brax.training's) can call this directly.
    """
    task = state.info['task']
    # Brax's step mutates `state.metrics` in place; hand it a private copy so
    # this function stays pure for callers who keep the old state.
    state = state.replace(metrics=dict(state.metrics), info=dict(state.info))
    with _system(self.base, self.task_sys(task)) as env:
      nstate = env.step(state, action)
    reward = self.reward_fn(
        state.pipeline_state, nstate.pipeline_state, action, task, self.dt)
    # Brax's healthy check (a Python 0.0 when an env never terminates).
    return nstate.replace(reward=reward.astype(jnp.float32),
                          done=jnp.asarray(nstate.done, jnp.float32))

  def _step(self, state: State, action: jax.Array) -> State:
    nstate = self.transition(state, action)
    terminated = nstate.done
    steps = state.info['steps'] + 1
    out_of_time = (steps >= self.episode_length).astype(jnp.float32)
    info = dict(nstate.info)
    info.update(steps=steps, truncation=out_of_time * (1.0 - terminated))
    return nstate.replace(done=jnp.maximum(terminated, out_of_time), info=info)


def reset_done(env, state: State, rng: jax.Array, any_done=None) -> State:
  """Restarts the envs of a batch (leaves `[E, ...]`) whose episode ended.

  Ended envs get fresh random starts of their own task (`state.info['task']`);
  the others are untouched. The reset runs only when `any_done` is true
  (default: some env of this batch ended). Pass an unbatched predicate (e.g.
  one `psum`'d over a named vmap axis) to keep this a real `lax.cond` under
  `vmap`, so iterations where no episode ended pay nothing for it.
  """
  done = state.done > 0
  if any_done is None:
    any_done = jnp.any(done)

  def reset(state):
    fresh = jax.vmap(env.reset)(jax.random.split(rng, done.shape[0]), state.info['task'])

    def pick(new, old):
      return jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), new, old)

    return jax.tree.map(pick, fresh, state)

  return jax.lax.cond(any_done, reset, lambda s: s, state)


def tile(task: TaskParams, n: int) -> TaskParams:
  """One task's params broadcast to `n` envs (leaves `[n, ...]`)."""
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), task)


def rollout(env, state: State, rng: jax.Array, steps: int, act: Callable):
  """`steps` steps of a batch of envs (leaves `[B, ...]`), auto-resetting ended
  episodes with `reset_done`; `act(obs [B, obs_size], key) -> (action [B, A], aux)`.

  Returns the final state and `(rewards [steps, B], aux stacked on a leading [steps] axis)`.
  """

  def body(state, key):
    k_act, k_reset = jax.random.split(key)
    action, aux = act(state.obs, k_act)
    state = jax.vmap(env.step)(state, action)
    return reset_done(env, state, k_reset), (state.reward, aux)

  return jax.lax.scan(body, state, jax.random.split(rng, steps))


def random_rollout(env, state: State, rng: jax.Array, steps: int):
  """`rollout` under uniform random actions in [-1, 1].

  Returns the final state and the rewards `[steps, B]`. Jit it (with `steps`
  static) to measure raw env throughput or a random policy's return.
  """

  def act(obs, key):
    return jax.random.uniform(key, (obs.shape[0], env.action_size), minval=-1.0, maxval=1.0), ()

  state, (rewards, _) = rollout(env, state, rng, steps, act)
  return state, rewards


@dataclasses.dataclass(frozen=True)
class TaskFamily:
  """A named distribution over tasks of one `TaskEnv`, with three splits.

  Attributes:
    name: registry name, e.g. 'ant_goal'.
    env: the TaskEnv every task of this family runs in.
    samplers: split name -> `fn(rng, n) -> TaskParams` (leaves `[n, ...]`).
    description: one line per split, for reports and `--help`.
  """

  name: str
  env: TaskEnv
  samplers: Mapping[str, Sampler]
  description: Mapping[str, str]

  @property
  def action_size(self) -> int:
    return self.env.action_size

  @property
  def episode_length(self) -> int:
    return self.env.episode_length

  @functools.cached_property
  def obs_size(self) -> int:
    task = jax.tree.map(lambda x: x[0], self.sample(jax.random.PRNGKey(0), 1, 'train'))
    return int(self.env.observation_shape(task)[-1])

  def sample(self, rng: jax.Array, n: int, split: str) -> TaskParams:
    """Draws `n` tasks of `split`; every leaf has leading axis `n`."""
    if split not in self.samplers:
      raise ValueError(
          f'unknown split {split!r} for {self.name}; choose one of '
          f'{sorted(self.samplers)}.'
      )
    if n < 1:
      raise ValueError(f'n must be >= 1 to sample tasks, got {n}.')
    return self.samplers[split](rng, int(n))

  # -- JSON ------------------------------------------------------------------
  def tasks_to_json(self, tasks: TaskParams, split: str) -> str:
    """Serialises a task set (exact float32 round trip via repr of floats)."""
    payload = {
        'family': self.name,
        'split': split,
        'params': {k: np.asarray(v).tolist() for k, v in tasks.items()},
        'dtypes': {k: str(np.asarray(v).dtype) for k, v in tasks.items()},
    }
    return json.dumps(payload)

  def tasks_from_json(self, text: str) -> TaskParams:
    payload = json.loads(text)
    if payload.get('family') != self.name:
      raise ValueError(
          f'task set is for family {payload.get("family")!r}, not '
          f'{self.name!r}; load it with apb_jax.tasks.make('
          f'{payload.get("family")!r}).'
      )
    return {
        k: jnp.asarray(np.asarray(v, dtype=payload['dtypes'][k]))
        for k, v in payload['params'].items()
    }

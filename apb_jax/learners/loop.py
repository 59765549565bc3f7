"""The host side every learner shares: compile ahead of time, then a Python loop over chunks.

A learner (SAC/TD3's `train.Trainer`, PPO's `ppo.PPOTrainer`) subclasses
`HostLoop` and writes, for ONE task:
  * `_init_one(rng, task, adapters, backbone) -> state` (a subclass may change
    what it gets through `_init_args` and `init_axes`);
  * `_chunk_one(state, chunk_index) -> (state, metrics)`: `eval_every` env steps;
  * `_evaluate_one(state) -> []`: the deterministic policy's mean eval return;
and sets `state_axes` (its state's vmap axes: 0 everywhere but the unbatched
`shared`) and `finite_metrics` (the metric names that must stay finite). This
class vmaps them over the named task axis and jits them, for K tasks at once:
`init(rng, tasks, init_params)`, `chunk(state, chunk_index)`, `evaluate(state)`.
Its config has `total_steps`, `eval_every`, `num_chunks`, `algo` and `mode`.

`train` is the only loop: it evaluates once before training and after every
chunk, reports progress, calls `progress_fn(env_steps, metrics)` and
`checkpoint_fn(chunks_done, state, curves)`, and continues from
`resume=(state, chunks_done, curves)`.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from apb_jax import hosts, programs
from apb_jax.learners import memory, normalizer, sharding
from apb_jax.learners.shared import TASK_AXIS
from apb_jax.progress import Progress


class TrainResult(NamedTuple):
  state: object
  curves: np.ndarray      # [K, n_evals] deterministic eval return
  steps: np.ndarray       # [n_evals] env steps per task at each evaluation
  metrics: dict           # name -> [K, n_chunks]
  compile_s: float        # lowering + compiling the chunk and the evaluation
  run_s: float            # wall time of train(), compile included


def check_adapters(init_params, k: int) -> None:
  """Raises the one-line fix if `init_params['adapters']` lacks a leading `[k]` task axis."""
  for leaf in jax.tree.leaves(init_params['adapters']):
    if leaf.ndim < 2 or leaf.shape[0] != k:
      raise ValueError(
          f'init_params["adapters"] needs a leading task axis of size {k} (got a leaf '
          f'of shape {leaf.shape}); build them with jax.vmap(policy.init_adapters).')


def run_keys(rng, k: int):
  """`rng` (one key, split over the K runs, or K keys `[K, 2]`, one per run) -> `[K, 2]`.

  One key per run lets runs of several stages share one call (stacked) with the keys each
  run would have had alone: run i of a stage keyed `r` gets `split(r, runs)[i]` either way."""
  if np.ndim(rng) == 2:
    if np.shape(rng)[0] != k:
      raise ValueError(f'{np.shape(rng)[0]} run keys for {k} tasks; pass one key, or one per '
                       'task (jax.random.split(rng, K)).')
    return rng
  return jax.random.split(rng, k)


def place(rng, tasks, init_params, per_run_backbone: bool = False):
  """(per-task rngs, tasks, adapters, backbone) placed on the task mesh (see sharding.py):
  the backbone replicated, or with `per_run_backbone` (leaves `[K, ...]`) split like the
  adapters."""
  k = jax.tree.leaves(tasks)[0].shape[0]
  check_adapters(init_params, k)
  tasks, adapters = sharding.shard_tasks((tasks, init_params['adapters']))
  rngs = sharding.shard_tasks(run_keys(rng, k))
  return rngs, tasks, adapters, place_shared(init_params['backbone'], per_run_backbone, k)


def place_shared(tree, per_run: bool, k: int):
  """What all runs share at the start (a backbone, a critic backbone, adapters to start
  from): one copy replicated, or with `per_run` one per run (leaves `[K, ...]`), split over
  the task mesh."""
  if not per_run:
    return sharding.replicate(tree)
  for leaf in jax.tree.leaves(tree):
    if np.ndim(leaf) < 1 or np.shape(leaf)[0] != k:
      raise ValueError(f'a per-run start needs a leading axis of {k} runs (got a leaf of '
                       f'shape {np.shape(leaf)}); tile it (tasks.base.tile) per run.')
  return sharding.shard_tasks(tree)


class HostLoop:
  """Base class of the learners: the task vmap, `compile` and `train`."""

  finite_metrics: tuple = ()
  state_axes = None
  inherits_obs_stats = False   # True: `init` starts state.agent.obs_stats from init_params'

  def __init__(self, config, family, per_run_backbone: bool = False):
    """`per_run_backbone`: every run starts from its own backbone (and critic backbone and
    normaliser; `init_params` leaves `[K, ...]`), so stages over different backbones share
    one call (plan.py's stacking); the learner's modes 'adapters' and 'all' only."""
    if per_run_backbone and config.mode not in ('adapters', 'all'):
      raise ValueError(f'per-run backbones need mode adapters or all, not {config.mode!r} '
                       '(modes shared and tied hold one copy for all runs).')
    self.per_run_backbone = per_run_backbone
    if per_run_backbone:   # the shared part of the state is batched like the rest
      self.state_axes = self.state_axes.replace(shared=0)
      self.init_axes = (0,) * len(self.init_axes)
    self.config = config
    self.family = family
    self.env = family.env
    self.obs_size = family.obs_size
    self.action_size = family.action_size
    self.last_compile_s = 0.0    # seconds compiling chunk + evaluate in the latest train()
    axes = self.state_axes
    # No donate_argnums: inside a chunk the scan already updates the replay buffer in place;
    # the one copy of the state per chunk costs ~1 ms of a 2.4 s chunk at K = 1,024 on an
    # H200 (2.7 MiB/task at 4.3 TB/s), and donation would delete buffers callers still hold
    # (jit forwards the unchanged backbone of `init`'s input into the state).
    # programs.jit: jax.jit, or while a launcher keeps traced programs (programs.py), the
    # program traced by an earlier launch of the same experiment and code.
    who = (f'{type(self).__module__}.{type(self).__qualname__} {family.name} '
           f'{type(self.env).__qualname__} per_run={per_run_backbone} {config!r}')
    self.chunk = programs.jit(jax.vmap(self._chunk_one, in_axes=(axes, None),
                                       out_axes=(axes, 0), axis_name=TASK_AXIS),
                              f'chunk {who}')
    self.evaluate = programs.jit(jax.vmap(self._evaluate_one, in_axes=(axes,)),
                                 f'evaluate {who}')
    self._init = programs.jit(jax.vmap(self._init_one, in_axes=self.init_axes, out_axes=axes),
                              f'init {who}')

  init_axes = (0, 0, 0, None)   # vmap axes of `_init_args`'s arguments to `_init_one`

  def _init_args(self, rng, tasks, init_params) -> tuple:
    """`_init_one`'s arguments for all tasks: (per-task rngs, tasks, adapters, backbone)."""
    return place(rng, tasks, init_params, self.per_run_backbone)

  def init(self, rng, tasks, init_params):
    """Batched learner state for K tasks: `tasks` leaves `[K, ...]`, `init_params =
    {'backbone': unbatched, 'adapters': leaves [K, ...]}`, and, where the learner
    `inherits_obs_stats` (SAC/TD3, PPO), optionally `'obs_stats'`: a Normalizer (unbatched)
    every task's normaliser starts from (e.g. meta-training's) instead of an empty one. With
    `per_run_backbone` every leaf but the adapters' also leads with `[K]`. `rng`: one key or
    one per run (`run_keys`). A
    state too large for the devices stops here, before anything compiles
    (memory.check_fits)."""
    args = self._init_args(rng, tasks, init_params)
    k = jax.tree.leaves(tasks)[0].shape[0]
    # The jitted function's own eval_shape: the call below reuses its trace.
    memory.check_fits(self._init.eval_shape(*args), k)
    state = self._init(*args)
    stats = init_params.get('obs_stats') if self.inherits_obs_stats else None
    if stats is None:
      return state
    stats = normalizer.from_tree(stats)
    stats = place_shared(stats, True, k) if self.per_run_backbone else sharding.shard_tasks(
        jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *jnp.shape(x))), stats))
    return state.replace(agent=state.agent.replace(obs_stats=stats))

  def compile(self, state) -> float:
    """Compiles chunk and evaluate for `state`'s shapes ahead of time; returns the seconds.

    The executables are kept by chunk's and evaluate's jit (or programs.Program), so the
    calls that follow (with an `np.int32` chunk index, as here) do not compile again.
    """
    t0 = time.perf_counter()
    self.chunk.compile(state, np.int32(0))
    self.evaluate.compile(state)
    return time.perf_counter() - t0

  def train(self, rng, tasks, init_params, *,
            progress_fn: Optional[Callable[[int, dict], None]] = None,
            checkpoint_fn: Optional[Callable[[int, object, list], None]] = None,
            resume: Optional[tuple] = None, show_progress: bool = True,
            label: Optional[str] = None) -> TrainResult:
    """Runs `config.num_chunks` chunks; `resume=(state, chunks_done, curves)`.

    `init_params` is only read when starting afresh (the backbone and the
    adapters of a resumed run are in its state).
    """
    c = self.config
    start = time.perf_counter()
    if resume is None:
      state, done, curves = self.init(rng, tasks, init_params), 0, None
    else:
      state, done, curves = resume
    compile_s = self.last_compile_s = self.compile(state)   # read by progress_fn observers
    hosts.barrier(f'compiled {label}')   # processes compile at different speeds
    curves = [hosts.to_host(self.evaluate(state))] if curves is None else list(curves)
    history = []
    progress = Progress(total=c.total_steps, label=label or f'{c.algo}/{c.mode}',
                        enabled=show_progress)
    progress.update(done * c.eval_every, float(np.mean(curves[-1])))
    for chunk in range(done, c.num_chunks):
      state, metrics = self.chunk(state, np.int32(chunk))
      metrics['eval_return'] = self.evaluate(state)
      metrics = hosts.to_host(metrics)       # whole, on every process of the run
      self._check_finite(metrics, chunk)
      curves.append(np.asarray(metrics['eval_return']))
      history.append(metrics)
      steps = (chunk + 1) * c.eval_every
      progress.update(steps, float(np.mean(metrics['eval_return'])))
      if progress_fn is not None:
        progress_fn(steps, metrics)
      if checkpoint_fn is not None:
        checkpoint_fn(chunk + 1, state, curves)
    progress.close()
    stacked = {k: np.stack([h[k] for h in history], axis=-1) for k in history[0]} if history else {}
    return TrainResult(
        state=state, curves=np.stack(curves, axis=-1),
        steps=np.arange(len(curves)) * c.eval_every,
        metrics=stacked, compile_s=compile_s, run_s=time.perf_counter() - start)

  def _check_finite(self, metrics, chunk):
    for name in (*self.finite_metrics, 'eval_return'):
      bad = ~np.isfinite(np.asarray(metrics[name]))
      if bad.any():
        raise FloatingPointError(
            f'{name} is not finite for task index {int(np.argmax(bad))} in chunk {chunk} '
            f'(env steps {(chunk + 1) * self.config.eval_every}); lower the learning rates or '
            'check the reward scale.')

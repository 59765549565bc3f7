"""The off-policy train loop shared by SAC and TD3, vmapped over tasks.

    trainer = make_train(config, family)
    result = trainer.train(rng, tasks, init_params)        # curves [task, n_evals]

Structure (PureJaxRL / brax.training style, with the host only at the edges):
  * `_iteration` (one task): act in `num_envs` envs, store the transitions,
    auto-reset finished envs, then `grad_updates_per_step` updates;
  * `_chunk_one` (one task): `lax.scan` of `eval_every / num_envs` iterations;
    `chunk` is `jit(vmap(_chunk_one))` over the task axis;
  * `evaluate`: `jit(vmap(_evaluate_one))`, the deterministic policy's mean
    return over `eval_episodes` episodes per task, run after every chunk (and
    once before training); compiled once, apart from the chunk;
  * `train`: the Python loop over chunks, which only reports progress, calls
    `progress_fn(env_steps, metrics)` and `checkpoint_fn(chunks_done, state,
    curves)`, and can resume from a returned state.

Shapes: `tasks` leaves `[K, ...]`; `init_params = {'backbone': unbatched,
'adapters': leaves [K, ...]}`. Every leaf of the learner state carries the
leading `[K]` axis except `state.shared` (the backbone and its optimiser
state), which is one unbatched copy: frozen in mode 'adapters', trained by
the task-mean gradient in mode 'shared' (meta-training), unused in 'all'. All schedule counters (warm-up, TD3 delay, param-noise
interval) are derived from the chunk index and the scan index, which are the
same for every task, so their branches are real `lax.cond`s under the vmap.
With several devices the task axis is sharded over a 1-D mesh (`sharding.py`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from apb_jax import evaluation
from apb_jax.learners import agents, exploration, normalizer, sharding
from apb_jax.learners import replay as replay_lib
from apb_jax.learners.config import LearnerConfig
from apb_jax.progress import Progress
from apb_jax.tasks.base import reset_done, tile

TASK_AXIS = agents.TASK_AXIS   # the named vmapped task axis (auto-reset psum, 'shared' pmean)


@struct.dataclass
class LearnerState:
  """Everything the learners carry between chunks.

  Leaves are batched `[K, ...]` over tasks, except `shared` (one copy).
  """

  agent: agents.AgentState
  noise: Optional[exploration.ParamNoise]   # None for action-space exploration
  replay: replay_lib.Replay
  env_state: Any        # brax State, leaves [num_envs, ...]; the task is in info['task']
  rng: jax.Array
  shared: agents.Shared  # unbatched: the backbone (+ its Adam state in mode 'shared')


# vmap in/out axes of a LearnerState: task-batched, except the shared backbone.
STATE_AXES = LearnerState(agent=0, noise=0, replay=0, env_state=0, rng=0, shared=None)


class TrainResult(NamedTuple):
  state: LearnerState
  curves: np.ndarray      # [K, n_evals] deterministic eval return
  steps: np.ndarray       # [n_evals] env steps per task at each evaluation
  metrics: dict           # name -> [K, n_chunks]
  compile_s: float        # lowering + compiling the chunk and the evaluation
  run_s: float            # wall time of train(), compile included


def _round_up(x, multiple):
  return -(-x // multiple) * multiple


class Trainer:
  """SAC or TD3 (per `config.algo`) on the tasks of one family."""

  def __init__(self, config: LearnerConfig, family):
    self.config = config
    self.family = family
    self.env = family.env
    self.obs_size = family.obs_size
    self.action_size = family.action_size
    self.last_compile_s = 0.0    # seconds compiling chunk + evaluate in the latest train()
    self.chunk = jax.jit(jax.vmap(self._chunk_one, in_axes=(STATE_AXES, None),
                                  out_axes=(STATE_AXES, 0), axis_name=TASK_AXIS))
    self.evaluate = jax.jit(jax.vmap(self._evaluate_one, in_axes=(STATE_AXES,)))
    self._init = jax.jit(jax.vmap(self._init_one, in_axes=(0, 0, 0, None),
                                  out_axes=STATE_AXES))

  # -- initial state -------------------------------------------------------------
  def _init_one(self, rng, task, adapters, backbone) -> LearnerState:
    c = self.config
    k_agent, k_env, k_noise, k_loop = jax.random.split(rng, 4)
    params = {'backbone': backbone, 'adapters': adapters}
    agent = agents.init(k_agent, params, self.obs_size, self.action_size, c)
    env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, c.num_envs),
                                         tile(task, c.num_envs))
    example = agents.Transition(
        obs=jnp.zeros(self.obs_size), action=jnp.zeros(self.action_size),
        reward=jnp.zeros(()), next_obs=jnp.zeros(self.obs_size), terminal=jnp.zeros(()))
    noise = (exploration.init(k_noise, agent.actor, c.param_noise_init)
             if c.exploration == 'param' else None)
    return LearnerState(agent=agent, noise=noise,
                        replay=replay_lib.init(example, _round_up(c.buffer_size, c.num_envs)),
                        env_state=env_state, rng=k_loop,
                        shared=agents.init_shared(backbone, c))

  def init(self, rng, tasks, init_params) -> LearnerState:
    """Batched learner state for K tasks (see module docstring for shapes)."""
    k = jax.tree.leaves(tasks)[0].shape[0]
    adapters = init_params['adapters']
    for leaf in jax.tree.leaves(adapters):
      if leaf.ndim < 2 or leaf.shape[0] != k:
        raise ValueError(
            f'init_params["adapters"] needs a leading task axis of size {k} (got a leaf '
            f'of shape {leaf.shape}); build them with jax.vmap(policy.init_adapters).')
    tasks, adapters = sharding.shard_tasks((tasks, adapters))
    rngs = sharding.shard_tasks(jax.random.split(rng, k))
    backbone = sharding.replicate(init_params['backbone'])
    return self._init(rngs, tasks, adapters, backbone)

  # -- one iteration -------------------------------------------------------------
  def _act(self, ls: LearnerState, obs_n, rng):
    backbone = ls.shared.backbone
    c = self.config
    if c.exploration == 'param':
      return agents.deterministic_action(ls.noise.perturbed, obs_n, backbone, c)
    return agents.explore_action(rng, ls.agent, obs_n, backbone, c)

  def _adapt_noise(self, ls: LearnerState, rng):
    c = self.config
    backbone = ls.shared.backbone
    k_batch, k_perturb = jax.random.split(rng)
    obs_n = agents.normalize(
        ls.agent, replay_lib.sample(ls.replay, k_batch, c.batch_size).obs, c)
    distance = exploration.action_distance(
        agents.deterministic_action(ls.noise.perturbed, obs_n, backbone, c),
        agents.deterministic_action(ls.agent.actor, obs_n, backbone, c))
    return exploration.adapt(k_perturb, ls.noise, ls.agent.actor, distance,
                             c.param_noise_target, c.param_noise_adapt)

  def _iteration(self, ls: LearnerState, it):
    c = self.config
    rng, k_act, k_rand, k_reset, k_learn, k_noise = jax.random.split(ls.rng, 6)
    obs = ls.env_state.obs
    action = self._act(ls, agents.normalize(ls.agent, obs, c), k_act)
    warm = it * c.num_envs < c.warmup_steps
    action = jnp.where(warm, jax.random.uniform(k_rand, action.shape, minval=-1, maxval=1),
                       action)
    nstate = jax.vmap(self.env.step)(ls.env_state, action)
    terminal = nstate.done * (1.0 - nstate.info['truncation'])
    replay = replay_lib.insert(ls.replay, agents.Transition(
        obs=obs, action=action, reward=nstate.reward, next_obs=nstate.obs, terminal=terminal))
    agent = ls.agent
    if c.normalize_obs:
      agent = agent.replace(obs_stats=normalizer.update(agent.obs_stats, obs))
    # Auto-reset with fresh random starts. `psum` over the named task axis makes
    # the predicate the same for every task, so this is a real branch: the
    # (costly) reset runs only on iterations where some env of some task ended.
    any_done = jax.lax.psum(jnp.any(nstate.done > 0).astype(jnp.int32), TASK_AXIS) > 0
    env_state = reset_done(self.env, nstate, k_reset, any_done)

    # Batches are drawn outside the branch: passing the whole replay buffer into
    # a lax.cond makes XLA:CPU copy it on every iteration.
    k_batch, k_learn = jax.random.split(k_learn)
    batches = agents.sample_batches(replay, k_batch, c)

    def learn(agent, shared):
      return agents.updates(agent, shared, batches, k_learn, c,
                            it * c.grad_updates_per_step)

    def skip(agent, shared):
      zero = jnp.zeros(())
      return agent, shared, {'critic_loss': zero, 'actor_loss': zero, 'alpha': zero}

    agent, shared, metrics = jax.lax.cond(warm, skip, learn, agent, ls.shared)
    noise = ls.noise
    if c.exploration == 'param':
      adapt_now = jnp.logical_and(jnp.logical_not(warm), it % c.param_noise_interval == 0)
      noise = jax.lax.cond(adapt_now, lambda: self._adapt_noise(
          ls.replace(agent=agent, replay=replay, shared=shared), k_noise), lambda: noise)
      metrics['param_noise_sigma'] = noise.sigma
      metrics['param_noise_distance'] = noise.distance
    metrics['train_reward'] = jnp.mean(nstate.reward)
    ls = LearnerState(agent=agent, noise=noise, replay=replay, env_state=env_state, rng=rng,
                      shared=shared)
    return ls, metrics

  # -- chunks and evaluation ---------------------------------------------------------
  def _chunk_one(self, ls: LearnerState, chunk_index):
    n = self.config.iterations_per_chunk

    def body(ls, i):
      return self._iteration(ls, chunk_index * n + i)

    ls, metrics = jax.lax.scan(body, ls, jnp.arange(n))
    metrics = {k: v[-1] if k.startswith('param_noise') else jnp.mean(v)
               for k, v in metrics.items()}
    return ls, metrics

  def _evaluate_one(self, ls: LearnerState):
    """Mean undiscounted return of the deterministic policy over eval_episodes."""
    c = self.config

    def act(obs, key):
      del key
      return agents.deterministic_action(ls.agent.actor, agents.normalize(ls.agent, obs, c),
                                         ls.shared.backbone, c)

    rng = jax.random.fold_in(ls.rng, 1)   # does not advance the training stream
    task = jax.tree.map(lambda x: x[0], ls.env_state.info['task'])
    return evaluation.episode_return(self.env, act, rng, task, c.eval_episodes)

  # -- the host loop -------------------------------------------------------------------
  def compile(self, state: LearnerState) -> float:
    """Compiles chunk and evaluate for `state`'s shapes ahead of time; returns the seconds.

    The executables land in jit's cache, so the calls that follow (with an
    `np.int32` chunk index, as here) do not compile again.
    """
    t0 = time.perf_counter()
    self.chunk.lower(state, np.int32(0)).compile()
    self.evaluate.lower(state).compile()
    return time.perf_counter() - t0

  def train(self, rng, tasks, init_params, *,
            progress_fn: Optional[Callable[[int, dict], None]] = None,
            checkpoint_fn: Optional[Callable[[int, LearnerState, list], None]] = None,
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
    curves = [np.asarray(self.evaluate(state))] if curves is None else list(curves)
    history = []
    progress = Progress(total=c.total_steps, label=label or f'{c.algo}/{c.mode}',
                        enabled=show_progress)
    progress.update(done * c.eval_every, float(np.mean(curves[-1])))
    for chunk in range(done, c.num_chunks):
      state, metrics = self.chunk(state, np.int32(chunk))
      metrics['eval_return'] = self.evaluate(state)
      metrics = jax.device_get(metrics)
      _check_finite(metrics, chunk, c)
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


def _check_finite(metrics, chunk, config):
  for name in ('critic_loss', 'actor_loss', 'eval_return'):
    bad = ~np.isfinite(np.asarray(metrics[name]))
    if bad.any():
      raise FloatingPointError(
          f'{name} is not finite for task index {int(np.argmax(bad))} in chunk {chunk} '
          f'(env steps {(chunk + 1) * config.eval_every}); lower the learning rates or '
          'check the reward scale.')


def make_train(config: LearnerConfig, family) -> Trainer:
  return Trainer(config, family)

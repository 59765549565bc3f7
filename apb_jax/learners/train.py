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
  * `train`: the Python loop over chunks, shared with PPO (`loop.HostLoop`),
    which only reports progress, calls `progress_fn(env_steps, metrics)` and
    `checkpoint_fn(chunks_done, state, curves)`, and can resume from a
    returned state.

Shapes: `tasks` leaves `[K, ...]`; `init_params = {'backbone': unbatched,
'adapters': leaves [K, ...]}`, plus `'critic_backbone'` (unbatched twin, leaves
[2, ...]) for the APB critic (`config.critic_mode` != 'mlp', networks.py), and
optionally `'critic_adapters'` (its adapters at the start, [2, ...]) and
`'obs_stats'` (an inherited normaliser, loop.HostLoop.init). Every leaf of the
learner state carries the leading `[K]` axis except `state.shared` (the
backbone and its optimiser state), which is one unbatched copy: frozen in mode
'adapters', trained by the task-mean gradient in mode 'shared'
(meta-training), unused in 'all'. All schedule counters (warm-up, TD3 delay,
param-noise interval) are derived from the chunk index and the scan index,
which are the same for every task, so their branches are real `lax.cond`s
under the vmap.
With several devices the task axis is sharded over a 1-D mesh (`sharding.py`).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from apb_jax import evaluation
from apb_jax.learners import agents, exploration, loop, normalizer
from apb_jax.learners import replay as replay_lib
from apb_jax.learners.config import LearnerConfig
from apb_jax.learners.loop import TrainResult  # noqa: F401  (re-exported)
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


def _round_up(x, multiple):
  return -(-x // multiple) * multiple


class Trainer(loop.HostLoop):
  """SAC or TD3 (per `config.algo`) on the tasks of one family; the host loop is `loop.HostLoop`."""

  finite_metrics = ('critic_loss', 'actor_loss')
  inherits_obs_stats = True
  state_axes = STATE_AXES
  init_axes = (0, 0, 0, None, None, None)

  # -- initial state -------------------------------------------------------------
  def _init_args(self, rng, tasks, init_params):
    """Adds the APB critic's twin backbone, `init_params['critic_backbone']` (unbatched; None
    for critic_mode 'mlp'), shared by every task at the start, and its adapters at the start,
    `init_params['critic_adapters']` (unbatched, every task starts from them; None: fresh)."""
    k, per_run = jax.tree.leaves(tasks)[0].shape[0], self.per_run_backbone
    return (*loop.place(rng, tasks, init_params, per_run),
            loop.place_shared(init_params.get('critic_backbone'), per_run, k),
            loop.place_shared(init_params.get('critic_adapters'), per_run, k))

  def _init_one(self, rng, task, adapters, backbone, critic_backbone,
                critic_adapters) -> LearnerState:
    c = self.config
    k_agent, k_env, k_noise, k_loop = jax.random.split(rng, 4)
    params = {'backbone': backbone, 'adapters': adapters}
    agent = agents.init(k_agent, params, self.obs_size, self.action_size, c, critic_backbone,
                        critic_adapters)
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
    if c.normalize_obs:   # in mode 'tied' one normaliser: every task's copy sees all obs
      seen = jax.lax.all_gather(obs, TASK_AXIS).reshape(-1, obs.shape[-1]) if (
          c.mode == 'tied') else obs
      agent = agent.replace(obs_stats=normalizer.update(agent.obs_stats, seen))
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

def make_train(config: LearnerConfig, family, per_run_backbone: bool = False) -> Trainer:
  return Trainer(config, family, per_run_backbone)

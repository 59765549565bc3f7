"""RL^2's view of a task: a *trial* of `episodes` episodes of one task is one episode.

    env = TrialEnv(family.env, episodes=2)    # obs [obs_size + action_size + 2]

The wrapped env keeps the `TaskEnv` interface, so any learner runs it
unchanged (RL^2 is PPO with a recurrent core on this env):
  * observation = [obs, previous action, previous reward, ended], the input
    of Duan et al. (2016): after step t the policy sees s_{t+1}, a_t, r_t and
    whether the episode of step t ended (then s_{t+1} is a fresh start);
  * an inner episode that ends (either way) before the trial's last one is
    restarted *inside* the wrapper, so the learner sees one continuing
    episode and its recurrent carry (zeroed at the learner's episode ends)
    survives across the inner episodes of a trial and is zeroed between trials;
  * `done` = the trial is over; it is a true end (`truncation` 0): the
    meta-episode does not continue, so nothing bootstraps across trials;
  * `episode_length` = `episodes * env.episode_length`.
`state.info['episode']` counts the inner episodes that ended in this trial
(so `trial_returns` can split a trial's rewards by episode); the inner env's
state is `state.pipeline_state`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import State


class TrialEnv:
  """`env` (a TaskEnv or probe) seen as trials of `episodes` episodes."""

  def __init__(self, env, episodes: int):
    if episodes < 1:
      raise ValueError(f'trial_episodes={episodes} must be >= 1 (--config.baselines.rl2.'
                       'trial_episodes).')
    self.env, self.episodes = env, int(episodes)
    self.action_size = env.action_size
    self.episode_length = self.episodes * env.episode_length
    self.inner_episode_length = env.episode_length
    self.dt, self.backend = env.dt, env.backend

  def observation_shape(self, task):
    return (self.env.observation_shape(task)[-1] + self.action_size + 2,)

  def _obs(self, obs, action, reward, ended):
    return jnp.concatenate([obs, action, reward[None], ended[None]])

  def reset(self, rng, task) -> State:
    rng, k_reset = jax.random.split(rng)
    inner = self.env.reset(k_reset, task)
    zero = jnp.zeros(())
    obs = self._obs(inner.obs, jnp.zeros(self.action_size), zero, zero)
    return State(pipeline_state=inner, obs=obs, reward=zero, done=zero, metrics={},
                 info={'task': task, 'steps': jnp.zeros((), jnp.int32), 'truncation': zero,
                       'episode': jnp.zeros((), jnp.int32), 'rng': rng})

  def step(self, state: State, action: jax.Array) -> State:
    inner = self.env.step(state.pipeline_state, action)
    ended = inner.done > 0
    episode = state.info['episode'] + ended.astype(jnp.int32)
    trial_over = episode >= self.episodes
    rng, k_reset = jax.random.split(state.info['rng'])
    # A selected restart (computed every step under vmap: a Brax reset costs
    # about one physics substep, a fraction of a step's n_frames).
    restart = jnp.logical_and(ended, jnp.logical_not(trial_over))
    fresh = self.env.reset(k_reset, state.info['task'])
    inner_next = jax.tree.map(lambda new, old: jnp.where(restart, new, old), fresh, inner)
    obs = self._obs(inner_next.obs, action, inner.reward, ended.astype(jnp.float32))
    info = dict(state.info, steps=state.info['steps'] + 1, episode=episode, rng=rng)
    return state.replace(pipeline_state=inner_next, obs=obs, reward=inner.reward,
                         done=trial_over.astype(jnp.float32), info=info)


def trial_returns(env: TrialEnv, act, rng, task, n_trials: int, carry) -> jax.Array:
  """`[episodes]` mean return of each episode of `n_trials` fresh trials of `task`.

  `act(obs [n, obs'], key, carry) -> (action [n, A], carry)`, `carry` leaves
  `[n, ...]`, kept through the trial (the policy's memory of the task).
  """
  k_reset, k_act = jax.random.split(rng)
  state = jax.vmap(env.reset)(jax.random.split(k_reset, n_trials),
                              jax.tree.map(lambda x: jnp.broadcast_to(x, (n_trials, *x.shape)),
                                           task))

  def body(loop, key):
    state, returns, carry = loop
    action, carry = act(state.obs, key, carry)
    episode = state.info['episode']                       # [n] the episode of this step
    nstate = jax.vmap(env.step)(state, action)
    live = (state.done == 0).astype(jnp.float32)          # a trial never auto-restarts here
    returns = returns + (live * nstate.reward)[:, None] * jax.nn.one_hot(episode, env.episodes)
    return (nstate, returns, carry), None

  (_, returns, _), _ = jax.lax.scan(body, (state, jnp.zeros((n_trials, env.episodes)), carry),
                                    jax.random.split(k_act, env.episode_length))
  return jnp.mean(returns, axis=0)

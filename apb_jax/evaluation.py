"""Episode returns of a policy on one task: the learners' evaluation and the random baseline.

    ret = episode_return(env, act, rng, task, n_episodes)   # [] mean over n_episodes

`act(obs: [n, obs_size], rng) -> action: [n, action_size]`; a recurrent policy
passes its initial `carry` (leaves `[n, ...]`) and `act(obs, rng, carry) ->
(action, carry)`, the carry kept through the episode. Each of the n
episodes starts from its own reset and runs for `env.episode_length` steps;
rewards after an episode's first `done` are masked out, so a terminated
episode counts only up to its end (no auto-reset inside an evaluation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from apb_jax.tasks.base import tile


def episode_return(env, act, rng, task, n_episodes: int, carry=None) -> jax.Array:
  """Mean undiscounted return of `act` over `n_episodes` fresh episodes of `task`."""
  k_reset, k_act = jax.random.split(rng)
  state = jax.vmap(env.reset)(jax.random.split(k_reset, n_episodes), tile(task, n_episodes))
  step_act = (lambda obs, key, c: (act(obs, key), c)) if carry is None else act

  def body(loop_carry, key):
    state, ret, alive, c = loop_carry
    action, c = step_act(state.obs, key, c)
    state = jax.vmap(env.step)(state, action)
    return (state, ret + alive * state.reward, alive * (1.0 - state.done), c), None

  ones = jnp.ones(n_episodes)
  (_, ret, _, _), _ = jax.lax.scan(body, (state, 0.0 * ones, ones, carry),
                                   jax.random.split(k_act, env.episode_length))
  return jnp.mean(ret)


def random_return(env, rng, tasks, n_episodes: int) -> jax.Array:
  """[K] mean return of uniform random actions in [-1, 1] on each task (leaves [K, ...])."""

  def act(obs, key):
    return jax.random.uniform(key, (obs.shape[0], env.action_size), minval=-1.0, maxval=1.0)

  k = jax.tree.leaves(tasks)[0].shape[0]
  return jax.vmap(lambda r, t: episode_return(env, act, r, t, n_episodes))(
      jax.random.split(rng, k), tasks)

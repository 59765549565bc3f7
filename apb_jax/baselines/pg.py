"""Policy-gradient pieces of MAML: whole episodes, Monte-Carlo returns, a linear baseline.

    batch = episodes(env, act, rng, task, n)      # leaves [L, n, ...], L = env.episode_length
    adv = advantages(batch, gamma)               # [L, n], normalised over the live steps

`episodes` plays `n` fresh episodes of one task to their end (no auto-reset);
`alive[t]` is 1 while the episode has not ended before step t, and every loss
and statistic here weighs steps by it. The baseline is rllab/ProMP's
`LinearFeatureBaseline`: ridge regression of the discounted return on
[obs, obs^2, t, t^2, t^3, 1] (obs clipped to [-10, 10], t = step / 100), fitted
on the batch itself, so a test task needs no learned value function.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from apb_jax.tasks.base import tile


class Episodes(NamedTuple):
  obs: jax.Array        # [L, n, obs_size] the observation acted on
  u: jax.Array          # [L, n, action_size] pre-tanh action sample
  log_prob: jax.Array   # [L, n] log-probability under the policy that acted
  reward: jax.Array     # [L, n]
  alive: jax.Array      # [L, n] 1 until the episode's end (its last step included)
  next_obs: jax.Array   # [L, n, obs_size] the observation after the step


def episodes(env, act, rng, task, n: int) -> Episodes:
  """`n` fresh episodes of `task`; `act(obs [n, obs], key) -> (u [n, A], log_prob [n])`."""
  k_reset, k_act = jax.random.split(rng)
  state = jax.vmap(env.reset)(jax.random.split(k_reset, n), tile(task, n))

  def step(carry, key):
    state, alive = carry
    u, log_prob = act(state.obs, key)
    nstate = jax.vmap(env.step)(state, jnp.tanh(u))
    data = Episodes(obs=state.obs, u=u, log_prob=log_prob, reward=nstate.reward, alive=alive,
                    next_obs=nstate.obs)
    return (nstate, alive * (1.0 - nstate.done)), data

  _, data = jax.lax.scan(step, (state, jnp.ones(n)),
                         jax.random.split(k_act, env.episode_length))
  return data


def returns_to_go(reward, alive, gamma: float) -> jax.Array:
  """[L, n] discounted return from each live step to its episode's end (0 after it)."""
  def body(g_next, inputs):
    r, a = inputs
    g = a * (r + gamma * g_next)
    return g, g

  _, g = jax.lax.scan(body, jnp.zeros_like(reward[0]), (reward, alive), reverse=True)
  return g


def masked_mean(x, mask) -> jax.Array:
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def features(obs) -> jax.Array:
  """[L, n, 2 * obs + 4] the linear baseline's features."""
  length, n = obs.shape[:2]
  o = jnp.clip(obs, -10.0, 10.0)
  t = jnp.broadcast_to((jnp.arange(length) / 100.0)[:, None, None], (length, n, 1))
  return jnp.concatenate([o, o * o, t, t ** 2, t ** 3, jnp.ones_like(t)], axis=-1)


def linear_baseline(obs, target, alive, reg: float = 1e-5) -> jax.Array:
  """[L, n] fit of `target` on `features(obs)` by ridge regression over the live steps."""
  phi = features(obs)
  w_phi = phi * alive[..., None]
  gram = jnp.einsum('lnf,lng->fg', w_phi, phi)
  scale = jnp.trace(gram) / gram.shape[0]
  w = jnp.linalg.solve(gram + (reg * scale + 1e-8) * jnp.eye(gram.shape[0]),
                       jnp.einsum('lnf,ln->f', w_phi, target))
  return phi @ w


def advantages(batch: Episodes, gamma: float) -> jax.Array:
  """[L, n] return-to-go minus the linear baseline (GAE with lambda 1, as ProMP), normalised
  to mean 0 and std 1 over the live steps."""
  g = returns_to_go(batch.reward, batch.alive, gamma)
  adv = g - linear_baseline(batch.obs, g, batch.alive)
  mean = masked_mean(adv, batch.alive)
  std = jnp.sqrt(masked_mean(jnp.square(adv - mean), batch.alive))
  return (adv - mean) / (std + 1e-8) * batch.alive

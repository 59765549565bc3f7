"""PPO's pure pieces: generalised advantage estimation and the clipped surrogate.

All arrays are time-major, `[T, ...]` (any trailing batch axes).

Bootstrapping. `v_next[t]` is the value of the *true* next observation of
step t (before any auto-reset), so a truncated episode bootstraps through it,
while `terminal[t] = done * (1 - truncation)` zeroes it for a real
termination. `done[t]` (either end) cuts the advantage recursion, so no credit
flows across an episode boundary:
    delta_t = r_t + gamma (1 - terminal_t) v_next_t - v_t
    A_t     = delta_t + gamma lambda (1 - done_t) A_{t+1}
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(reward, value, value_next, terminal, done, gamma: float, lam: float) -> jax.Array:
  """Advantages `[T, ...]`; the value targets are `advantages + value`."""
  delta = reward + gamma * (1.0 - terminal) * value_next - value

  def body(acc, inputs):
    delta_t, done_t = inputs
    acc = delta_t + gamma * lam * (1.0 - done_t) * acc
    return acc, acc

  _, adv = jax.lax.scan(body, jnp.zeros_like(delta[0]), (delta, done), reverse=True)
  return adv


def normalize(adv: jax.Array) -> jax.Array:
  return (adv - jnp.mean(adv)) / (jnp.std(adv) + 1e-8)


def clipped_surrogate(log_prob, old_log_prob, adv, clip_eps: float):
  """(loss [], clip fraction []): -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A))."""
  ratio = jnp.exp(log_prob - old_log_prob)
  loss = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv))
  return loss, jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))

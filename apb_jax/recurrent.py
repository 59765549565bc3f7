"""A hand-written GRU cell (Cho et al. 2014), the recurrent core of the APB policy.

    carry' = gru_step(params, carry, x)       x: [..., in_size], carry: [..., hidden]

Gates as in flax's `nn.GRUCell`, with a bias on every hidden map too:
    r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
    z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h
The three input maps (and the three hidden maps) are one kernel each, split
after the product. Written by hand so its params are a plain dict like every
other leaf of the policy (optax partitions read them by path).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def init(rng: jax.Array, in_size: int, hidden: int) -> dict:
  """{'input': {'kernel': [in, 3H], 'bias': [3H]}, 'hidden': {'kernel': [H, 3H], 'bias': [3H]}}."""
  k_in, k_h = jax.random.split(rng)
  lecun = jax.nn.initializers.lecun_normal()
  orth = jax.nn.initializers.orthogonal()
  hidden_kernel = jnp.concatenate(
      [orth(k, (hidden, hidden), jnp.float32) for k in jax.random.split(k_h, 3)], axis=1)
  return {'input': {'kernel': lecun(k_in, (in_size, 3 * hidden), jnp.float32),
                    'bias': jnp.zeros((3 * hidden,), jnp.float32)},
          'hidden': {'kernel': hidden_kernel, 'bias': jnp.zeros((3 * hidden,), jnp.float32)}}


def hidden_size(params: dict) -> int:
  return params['hidden']['kernel'].shape[0]


def step(params: dict, carry: jax.Array, x: jax.Array) -> jax.Array:
  """One GRU step: carry [..., H], x [..., in_size] -> new carry [..., H]."""
  xi = x @ params['input']['kernel'] + params['input']['bias']
  hh = carry @ params['hidden']['kernel'] + params['hidden']['bias']
  xr, xz, xn = jnp.split(xi, 3, axis=-1)
  hr, hz, hn = jnp.split(hh, 3, axis=-1)
  r = jax.nn.sigmoid(xr + hr)
  z = jax.nn.sigmoid(xz + hz)
  n = jnp.tanh(xn + r * hn)
  return (1.0 - z) * n + z * carry

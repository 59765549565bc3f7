"""A fixed-capacity ring buffer of transitions that lives on the device.

One buffer per task: vmapping these functions adds the `[task]` axis. Data
leaves are `[capacity, ...]`; `insert` writes a batch at `position` (wrapping
around) and `sample` draws uniformly among the `size` filled slots.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Replay:
  data: Any              # pytree, leaves [capacity, ...]
  position: jax.Array    # [] int32, next slot to write
  size: jax.Array        # [] int32, filled slots (<= capacity)


def init(example: Any, capacity: int) -> Replay:
  """Empty buffer whose slots have the structure of one `example` transition."""
  data = jax.tree.map(
      lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example)
  return Replay(data=data, position=jnp.zeros((), jnp.int32),
                size=jnp.zeros((), jnp.int32))


def capacity(buffer: Replay) -> int:
  return jax.tree.leaves(buffer.data)[0].shape[0]


def insert(buffer: Replay, batch: Any) -> Replay:
  """Writes `batch` (leaves `[n, ...]`, n <= capacity) at the ring position.

  When the capacity is a multiple of n (as the learners arrange), a write never
  wraps and is one in-place `dynamic_update_slice` per leaf; otherwise a scatter.
  """
  cap = capacity(buffer)
  n = jax.tree.leaves(batch)[0].shape[0]
  if cap % n == 0:
    def write(d, b):
      return jax.lax.dynamic_update_slice_in_dim(d, b.astype(d.dtype), buffer.position, 0)
  else:
    idx = (buffer.position + jnp.arange(n)) % cap
    def write(d, b):
      return d.at[idx].set(b)
  data = jax.tree.map(write, buffer.data, batch)
  return Replay(data=data, position=(buffer.position + n) % cap,
                size=jnp.minimum(buffer.size + n, cap))


def sample(buffer: Replay, rng: jax.Array, n: int) -> Any:
  """`n` transitions drawn uniformly (with replacement) from the filled slots."""
  idx = jax.random.randint(rng, (n,), 0, jnp.maximum(buffer.size, 1))
  return jax.tree.map(lambda d: d[idx], buffer.data)

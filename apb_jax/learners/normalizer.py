"""Running mean / variance of observations (parallel Welford / Chan et al.)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Normalizer:
  mean: jax.Array    # [obs_size]
  m2: jax.Array      # [obs_size], sum of squared deviations
  count: jax.Array   # [] float32


def init(obs_size: int) -> Normalizer:
  return Normalizer(mean=jnp.zeros(obs_size), m2=jnp.zeros(obs_size),
                    count=jnp.zeros(()))


def update(stats: Normalizer, batch: jax.Array) -> Normalizer:
  """Folds `batch: [n, obs_size]` into the running statistics."""
  n = batch.shape[0]
  b_mean = jnp.mean(batch, axis=0)
  b_m2 = jnp.sum(jnp.square(batch - b_mean), axis=0)
  count = stats.count + n
  delta = b_mean - stats.mean
  mean = stats.mean + delta * n / count
  m2 = stats.m2 + b_m2 + jnp.square(delta) * stats.count * n / count
  return Normalizer(mean=mean, m2=m2, count=count)


def merge(stats: Normalizer) -> Normalizer:
  """One Normalizer of all the data of several: `stats` leaves [K, ...] (e.g. the train tasks'
  statistics after meta-training) -> their pooled mean, m2 and count (Chan et al.)."""
  count = jnp.sum(stats.count)
  weights = stats.count[:, None] / jnp.maximum(count, 1.0)
  mean = jnp.sum(weights * stats.mean, axis=0)
  m2 = jnp.sum(stats.m2, axis=0) + jnp.sum(
      stats.count[:, None] * jnp.square(stats.mean - mean), axis=0)
  return Normalizer(mean=mean, m2=m2, count=count)


def normalize(stats: Normalizer, obs: jax.Array, clip: float = 10.0) -> jax.Array:
  """(obs - mean) / std, clipped; identity while no data has been seen."""
  var = jnp.where(stats.count > 1, stats.m2 / jnp.maximum(stats.count, 1.0), 1.0)
  std = jnp.sqrt(jnp.maximum(var, 1e-6))
  return jnp.clip((obs - stats.mean) / std, -clip, clip)


def from_tree(tree) -> Normalizer:
  """A Normalizer from one restored by orbax as a plain dict (or returned as is)."""
  return tree if isinstance(tree, Normalizer) else Normalizer(**tree)

"""Adaptive parameter-space noise (Plappert et al. 2018, "Parameter Space
Noise for Exploration"), on the trainable actor leaves only.

The agent acts with a perturbed copy of its deterministic actor,
`theta~ = theta + sigma * eps`, eps ~ N(0, I) on every trainable leaf (the
adapters in mode 'adapters', everything in mode 'all'; the frozen backbone is
never perturbed). Every `param_noise_interval` iterations sigma is adapted so
that the action-space distance
    d = sqrt(mean((pi~(s) - pi(s))^2))   over a replay batch of states
tracks `param_noise_target`: sigma /= alpha if d > target else sigma *= alpha,
and a fresh perturbation is drawn with the new sigma.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ParamNoise:
  sigma: jax.Array       # []
  perturbed: Any         # same tree as the trainable actor
  distance: jax.Array    # [] last measured action distance


def perturb(rng, actor, sigma):
  leaves, treedef = jax.tree.flatten(actor)
  keys = jax.random.split(rng, len(leaves))
  noisy = [x + sigma * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
  return jax.tree.unflatten(treedef, noisy)


def init(rng, actor, sigma0: float) -> ParamNoise:
  sigma = jnp.asarray(sigma0, jnp.float32)
  return ParamNoise(sigma=sigma, perturbed=perturb(rng, actor, sigma),
                    distance=jnp.zeros(()))


def action_distance(perturbed_actions, clean_actions):
  return jnp.sqrt(jnp.mean(jnp.square(perturbed_actions - clean_actions)))


def adapt(rng, noise: ParamNoise, actor, distance, target, factor) -> ParamNoise:
  """New sigma from the measured `distance`, then a fresh perturbation of `actor`."""
  sigma = jnp.where(distance > target, noise.sigma / factor, noise.sigma * factor)
  return ParamNoise(sigma=sigma, perturbed=perturb(rng, actor, sigma), distance=distance)

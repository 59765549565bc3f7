"""PEARL's probabilistic context encoder: one Gaussian factor per transition, their product.

    mu, var = factors(params, context)          # context [N, c] -> [N, latent] each
    mean, var = posterior(mu, var, mask)        # product of Gaussians over the N factors
    kl = kl_to_prior(mean, var)                 # KL(N(mean, var) || N(0, I))

A transition is [obs_n, action, reward(, next_obs_n)] (`context_input`). The
posterior multiplies the factors of the transitions whose `mask` is 1:
precision = sum 1/var_n, mean = sum (mu_n / var_n) / precision (oyster's
`_product_of_gaussians`); with no transition it is the prior N(0, I). Because
the product is a sum of natural parameters, a growing context is summarised by
two running sums (`Sums`), which is how PEARL adapts on a test task.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from apb_jax.learners import networks

MIN_VAR = 1e-7


def context_input(obs_n, action, reward, next_obs_n=None) -> jax.Array:
  """[..., c] one transition per row: obs, action, reward (and next obs, if given)."""
  parts = [obs_n, action, reward[..., None]]
  return jnp.concatenate(parts + ([next_obs_n] if next_obs_n is not None else []), axis=-1)


def init(rng, input_size: int, widths: tuple, latent_size: int) -> dict:
  """MLP params, input -> widths -> 2 * latent (the factor's mean and raw variance)."""
  return networks.init_mlp(rng, (input_size, *widths, 2 * latent_size))


def factors(params, context) -> tuple[jax.Array, jax.Array]:
  """(mu, var) `[N, latent]` of each transition's Gaussian factor."""
  out = networks.mlp_apply(params, context)
  mu, raw = jnp.split(out, 2, axis=-1)
  return mu, jnp.maximum(jax.nn.softplus(raw), MIN_VAR)


class Sums(NamedTuple):
  """Natural parameters of a product of factors: sum 1/var and sum mu/var, each [latent]."""

  precision: jax.Array
  weighted_mean: jax.Array


def empty(latent_size: int) -> Sums:
  return Sums(jnp.zeros(latent_size), jnp.zeros(latent_size))


def add(sums: Sums, mu, var, mask=None) -> Sums:
  """`sums` with the factors `mu, var: [N, latent]` (rows where `mask: [N]` is 1) folded in."""
  w = jnp.ones(mu.shape[0]) if mask is None else mask
  return Sums(sums.precision + jnp.sum(w[:, None] / var, axis=0),
              sums.weighted_mean + jnp.sum(w[:, None] * mu / var, axis=0))


def from_sums(sums: Sums) -> tuple[jax.Array, jax.Array]:
  """(mean, var) [latent] of the posterior; the prior N(0, I) where nothing was added."""
  seen = sums.precision > 0
  var = jnp.where(seen, 1.0 / jnp.where(seen, sums.precision, 1.0), 1.0)
  return jnp.where(seen, sums.weighted_mean * var, 0.0), var


def posterior(mu, var, mask=None) -> tuple[jax.Array, jax.Array]:
  """(mean, var) [latent] of the product of the factors `[N, latent]`."""
  return from_sums(add(empty(mu.shape[-1]), mu, var, mask))


def sample(rng, mean, var) -> jax.Array:
  """z ~ N(mean, var), reparameterised (differentiable in mean and var)."""
  return mean + jnp.sqrt(var) * jax.random.normal(rng, mean.shape)


def kl_to_prior(mean, var) -> jax.Array:
  """KL(N(mean, var) || N(0, I)), summed over the latent dimensions."""
  return 0.5 * jnp.sum(var + jnp.square(mean) - 1.0 - jnp.log(var))

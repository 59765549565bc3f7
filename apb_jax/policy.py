"""The APB policy: linear input adapter -> frozen MLP backbone -> linear output adapter.

    pi(s) = W_out . f(W_in . s + b_in) + b_out

Parameters are plain dicts, laid out as
    {'backbone': {'dense_0': {'kernel', 'bias'}, ..., 'dense_{L-1}': ...},
     'adapters': {'in':  {'kernel': [obs_size, widths[0]],  'bias': [widths[0]]},
                  'out': {'kernel': [widths[-1], 2*act],    'bias': [2*act]}}}

Where the nonlinearities sit (activation `g`, e.g. relu):
    z   = W_in s + b_in                       input adapter, linear
    h_0 = g(z)                                backbone starts with g ...
    h_l = g(W_l h_{l-1} + b_l), l = 1..L      ... and applies g after each layer
    out = W_out h_L + b_out                   output adapter, linear
Because `g` is applied to the input adapter's output before the backbone's
first dense layer, the trainable W_in and the frozen W_1 never compose into a
single linear map, and likewise W_L and W_out are separated by `g`. So the
backbone `f` is a nonlinear function of its input on both sides.

`widths = (d_0, d_1, ..., d_L)`: d_0 is the backbone's input width (the input
adapter's output), d_L its output width; L = len(widths) - 1 dense layers.
The same architecture with every leaf trainable is the `scratch` baseline.

The output is a tanh-squashed Gaussian: `loc, scale` parameterise the
pre-squash Normal, and `action = tanh(loc)` is the deterministic action.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

Params = Mapping[str, Mapping]

ACTIVATIONS = {
    'relu': jax.nn.relu,
    'tanh': jnp.tanh,
    'elu': jax.nn.elu,
    'silu': jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
  """Static (hashable) architecture of the APB policy.

  Attributes:
    widths: backbone widths (d_0, ..., d_L), L >= 1 dense layers.
    activation: one of ACTIVATIONS.
    min_scale: floor added to softplus(scale) of the Gaussian.
  """

  widths: Sequence[int] = (256, 256, 256)
  activation: str = 'relu'
  min_scale: float = 1e-3

  def __post_init__(self):
    object.__setattr__(self, 'widths', tuple(int(w) for w in self.widths))
    if len(self.widths) < 2 or min(self.widths) < 1:
      raise ValueError(
          f'PolicyConfig.widths must hold >= 2 positive ints (input width and'
          f' at least one layer), got {self.widths}; e.g. widths=(256, 256).')
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f'unknown activation {self.activation!r}; choose one of '
          f'{sorted(ACTIVATIONS)}.')


class PolicyOutput(NamedTuple):
  """Tanh-squashed Gaussian: pre-squash Normal(loc, scale), action=tanh(loc)."""

  loc: jax.Array      # [..., action_size]
  scale: jax.Array    # [..., action_size], > 0
  action: jax.Array   # [..., action_size], in (-1, 1)


def dense_init(rng, fan_in, fan_out, gain):
  """Variance-scaling (fan-in, truncated normal) kernel and zero bias."""
  init = jax.nn.initializers.variance_scaling(gain, 'fan_in', 'truncated_normal')
  return {'kernel': init(rng, (fan_in, fan_out), jnp.float32),
          'bias': jnp.zeros((fan_out,), jnp.float32)}


def dense(p, x):
  return x @ p['kernel'] + p['bias']


def _gain(config: PolicyConfig) -> float:
  return 2.0 if config.activation == 'relu' else 1.0


def init_backbone(rng: jax.Array, config: PolicyConfig) -> Params:
  """Backbone params {'dense_l': {'kernel': [d_l, d_l+1], 'bias'}}."""
  widths = config.widths
  keys = jax.random.split(rng, len(widths) - 1)
  return {
      f'dense_{i}': dense_init(k, widths[i], widths[i + 1], _gain(config))
      for i, k in enumerate(keys)
  }


def init_adapters(rng: jax.Array, obs_size: int, action_size: int,
                  config: PolicyConfig) -> Params:
  """Fresh linear adapters {'in': obs->d_0, 'out': d_L->2*action_size}.

  The output adapter starts small (weights 100x smaller than fan-in scaling) so the initial policy's mean
  action is near zero whatever the backbone, which keeps early rollouts tame.
  """
  if obs_size < 1 or action_size < 1:
    raise ValueError(
        f'obs_size and action_size must be >= 1, got {obs_size}, '
        f'{action_size}; read them from family.obs_size/action_size.')
  k_in, k_out = jax.random.split(rng)
  return {
      'in': dense_init(k_in, obs_size, config.widths[0], 1.0),
      'out': dense_init(k_out, config.widths[-1], 2 * action_size, 1e-4),
  }


def init_params(rng: jax.Array, obs_size: int, action_size: int,
                config: PolicyConfig) -> Params:
  """{'backbone': ..., 'adapters': ...} for one task."""
  k_b, k_a = jax.random.split(rng)
  return {'backbone': init_backbone(k_b, config),
          'adapters': init_adapters(k_a, obs_size, action_size, config)}


def backbone_features(backbone: Params, z: jax.Array,
                      activation: str = 'relu') -> jax.Array:
  """f(z): [..., d_0] -> [..., d_L], nonlinear at its input and after each layer."""
  g = ACTIVATIONS[activation]
  h = g(z)
  for i in range(len(backbone)):
    h = g(dense(backbone[f'dense_{i}'], h))
  return h


def _check_fit(backbone: Params, adapters: Params):
  """Raises at trace time if adapters and backbone widths do not chain."""
  d_in = backbone['dense_0']['kernel'].shape[0]
  d_out = backbone[f'dense_{len(backbone) - 1}']['kernel'].shape[1]
  a_in = adapters['in']['kernel'].shape[1]
  a_out = adapters['out']['kernel'].shape[0]
  if (a_in, a_out) != (d_in, d_out):
    raise ValueError(
        f'adapters map to/from widths ({a_in}, {a_out}) but the backbone has '
        f'input width {d_in} and output width {d_out}; build adapters with '
        'the same PolicyConfig.widths as the backbone.')


def apply(backbone: Params, adapters: Params, obs: jax.Array,
          config: PolicyConfig = PolicyConfig()) -> PolicyOutput:
  """Policy distribution for `obs: [..., obs_size]` (any leading axes)."""
  _check_fit(backbone, adapters)
  z = dense(adapters['in'], obs)
  h = backbone_features(backbone, z, config.activation)
  loc, raw_scale = jnp.split(dense(adapters['out'], h), 2, axis=-1)
  scale = jax.nn.softplus(raw_scale) + config.min_scale
  return PolicyOutput(loc=loc, scale=scale, action=jnp.tanh(loc))


# -- the tanh-squashed Gaussian ------------------------------------------------
def sample_and_log_prob(rng: jax.Array, out: PolicyOutput):
  """Reparameterised sample a = tanh(u), u ~ N(loc, scale), and log pi(a).

  Returns (action [..., A], log_prob [...]); log_prob includes the tanh
  change-of-variables term log(1 - tanh(u)^2), computed stably.
  """
  u = out.loc + out.scale * jax.random.normal(rng, out.loc.shape)
  return jnp.tanh(u), _log_prob_pre_tanh(out, u)


def _log_prob_pre_tanh(out: PolicyOutput, u: jax.Array) -> jax.Array:
  normal = -0.5 * jnp.square((u - out.loc) / out.scale) - jnp.log(
      out.scale) - 0.5 * jnp.log(2 * jnp.pi)
  # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u))
  log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
  return jnp.sum(normal - log_det, axis=-1)

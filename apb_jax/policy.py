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

The adapter's form (`PolicyConfig.adapter`; what adaptation trains besides, or instead of,
the paper's two linear maps; the backbone stays frozen in every form):
    linear    W_in, b_in, W_out, b_out (APB, the default)
    in_only   W_in, b_in; the output adapter stays where it started
    out_only  W_out, b_out; the input adapter stays where it started
    lora      linear, plus a rank-r update of each frozen layer: h W_l + (h A_l) B_l, with
              A_l [d_l, r] random and B_l [r, d_l+1] zero at the start (LoRA, Hu et al. 2021)
    film      linear, plus a per-layer scale and shift of the layer's pre-activation:
              g(gamma_l * (h W_l + b_l) + beta_l), gamma_l = 1, beta_l = 0 at the start
              (FiLM, Perez et al. 2018)
The extra leaves live under `adapters['lora']` / `adapters['film']` ({'dense_l': ...}), so
they train wherever the adapters train; `frozen_adapters` names the adapter keys a form keeps
fixed (optim.adapters_only freezes them). Every form starts as the linear policy's function.

The output is a tanh-squashed Gaussian: `loc, scale` parameterise the
pre-squash Normal, and `action = tanh(loc)` is the deterministic action.

Optional recurrent core (`PolicyConfig.core_size = H > 0`, used by PPO and
RL^2): a GRU (apb_jax/recurrent.py) between the backbone and the output adapter,
    c_t = GRU(c_{t-1}, f(W_in s_t + b_in))    carry c: [..., H]
    out = W_out c_t + b_out                   output adapter: H -> 2*act
so the backbone stays a feed-forward function of the current observation (a
meta-trained feed-forward backbone can be reused under a core) and the memory
is read by the linear output adapter. The GRU's params live under
`adapters['core']`: they train wherever the adapters train (per task) and are
never part of the frozen backbone. The caller owns the carry: `apply_step`
advances it one step, `apply_sequence` scans it over time, zeroing it where
`resets` is 1 (every episode, or every trial of several episodes: the
learner's choice).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from apb_jax import recurrent

Params = Mapping[str, Mapping]

ACTIVATIONS = {
    'relu': jax.nn.relu,
    'tanh': jnp.tanh,
    'elu': jax.nn.elu,
    'silu': jax.nn.silu,
}


ADAPTER_FORMS = ('linear', 'in_only', 'out_only', 'lora', 'film')
_FROZEN = {'in_only': ('out',), 'out_only': ('in',)}   # adapter keys a form keeps fixed


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
  """Static (hashable) architecture of the APB policy.

  Attributes:
    widths: backbone widths (d_0, ..., d_L), L >= 1 dense layers.
    activation: one of ACTIVATIONS.
    min_scale: floor added to softplus(scale) of the Gaussian.
    loc_gain: the variance-scaling gain of the output adapter's mean half (its scale half
      always starts at 1e-4): 1e-4 starts the mean action near 0 whatever the backbone;
      a larger one (e.g. 1.0, brax.training's PPO) starts a policy whose mean moves.
    init_scale: the Gaussian's scale (pre-tanh std) of fresh adapters; 0 leaves the
      raw-scale bias at 0 (scale softplus(0) + min_scale = 0.694), > min_scale starts the
      bias where the scale equals it (a narrower start keeps early exploration tame).
  """

  widths: Sequence[int] = (256, 256, 256)
  activation: str = 'relu'
  min_scale: float = 1e-3
  core_size: int = 0        # GRU hidden size between backbone and output adapter; 0: none
  init_scale: float = 0.0
  loc_gain: float = 1e-4
  adapter: str = 'linear'   # one of ADAPTER_FORMS
  lora_rank: int = 4        # r of adapter='lora'

  def __post_init__(self):
    object.__setattr__(self, 'widths', tuple(int(w) for w in self.widths))
    if len(self.widths) < 2 or min(self.widths) < 1:
      raise ValueError(
          f'PolicyConfig.widths must hold >= 2 positive ints (input width and'
          f' at least one layer), got {self.widths}; e.g. widths=(256, 256).')
    if self.core_size < 0:
      raise ValueError(f'PolicyConfig.core_size must be >= 0 (0: no recurrent core), got '
                       f'{self.core_size}.')
    if self.init_scale != 0.0 and not self.init_scale > self.min_scale:
      raise ValueError(f'PolicyConfig.init_scale={self.init_scale} must be 0 (the default init)'
                       f' or > min_scale={self.min_scale}; e.g. init_scale=0.1.')
    if self.adapter not in ADAPTER_FORMS:
      raise ValueError(f'PolicyConfig.adapter={self.adapter!r} is unknown; choose one of '
                       f'{list(ADAPTER_FORMS)}.')
    if self.lora_rank < 1:
      raise ValueError(f'PolicyConfig.lora_rank must be >= 1, got {self.lora_rank}.')
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f'PolicyConfig.activation={self.activation!r} is unknown; choose one of '
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


_OUT_GAIN = 1e-4   # the output adapter's gain (its mean half: PolicyConfig.loc_gain)


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
  action is near zero whatever the backbone, which keeps early rollouts tame; its scale
  starts at `config.init_scale` when that is set.
  """
  if obs_size < 1 or action_size < 1:
    raise ValueError(
        f'obs_size and action_size must be >= 1, got {obs_size}, '
        f'{action_size}; read them from family.obs_size/action_size.')
  k_in, k_out, k_core = jax.random.split(rng, 3)
  head_in = config.core_size or config.widths[-1]
  adapters = {
      'in': dense_init(k_in, obs_size, config.widths[0], 1.0),
      'out': dense_init(k_out, head_in, 2 * action_size, _OUT_GAIN),
  }
  # the mean half at gain loc_gain: variance scaling's std grows as sqrt(gain)
  adapters['out']['kernel'] = adapters['out']['kernel'].at[:, :action_size].multiply(
      math.sqrt(config.loc_gain / _OUT_GAIN))
  if config.init_scale:   # softplus(b) + min_scale = init_scale
    b = math.log(math.expm1(config.init_scale - config.min_scale))
    adapters['out']['bias'] = adapters['out']['bias'].at[action_size:].set(b)
  if config.core_size:
    adapters['core'] = recurrent.init(k_core, config.widths[-1], config.core_size)
  return with_form(adapters, jax.random.fold_in(k_core, 1), config)


def with_form(adapters: Params, rng: jax.Array, config: PolicyConfig) -> Params:
  """`adapters` (unbatched; e.g. an adapter origin saved by meta-training, which is always
  linear) with the extra leaves of `config.adapter` added where missing, at the start that
  leaves the policy's function unchanged (lora's B = 0, film's gamma = 1 and beta = 0)."""
  name = config.adapter
  if name not in ('lora', 'film') or name in adapters:
    return dict(adapters)
  widths, r = config.widths, config.lora_rank
  keys = jax.random.split(rng, len(widths) - 1)
  if name == 'lora':   # A ~ fan-in scaling, as LoRA's Kaiming A; B = 0
    extra = {f'dense_{i}': {'a': dense_init(k, widths[i], r, 1.0)['kernel'],
                            'b': jnp.zeros((r, widths[i + 1]), jnp.float32)}
             for i, k in enumerate(keys)}
  else:
    extra = {f'dense_{i}': {'scale': jnp.ones((widths[i + 1],), jnp.float32),
                            'shift': jnp.zeros((widths[i + 1],), jnp.float32)}
             for i in range(len(widths) - 1)}
  return dict(adapters, **{name: extra})


def frozen_adapters(config: PolicyConfig) -> tuple:
  """The adapter keys (e.g. ('out',)) that `config.adapter` keeps at their start."""
  return _FROZEN.get(config.adapter, ())


def as_linear(config: PolicyConfig) -> PolicyConfig:
  """`config` with the paper's linear adapters (meta-training, and the methods that train
  the whole network, always use these; a form is an adaptation choice)."""
  return dataclasses.replace(config, adapter='linear')


def init_params(rng: jax.Array, obs_size: int, action_size: int,
                config: PolicyConfig) -> Params:
  """{'backbone': ..., 'adapters': ...} for one task."""
  k_b, k_a = jax.random.split(rng)
  return {'backbone': init_backbone(k_b, config),
          'adapters': init_adapters(k_a, obs_size, action_size, config)}


def backbone_features(backbone: Params, z: jax.Array, activation: str = 'relu',
                      adapters: Params | None = None) -> jax.Array:
  """f(z): [..., d_0] -> [..., d_L], nonlinear at its input and after each layer; `adapters`
  holding 'lora' or 'film' (an adapter form) modulate each frozen layer."""
  g = ACTIVATIONS[activation]
  lora = (adapters or {}).get('lora')
  film = (adapters or {}).get('film')
  h = g(z)
  for i in range(len(backbone)):
    name = f'dense_{i}'
    pre = dense(backbone[name], h)
    if lora is not None:
      pre = pre + (h @ lora[name]['a']) @ lora[name]['b']
    if film is not None:
      pre = film[name]['scale'] * pre + film[name]['shift']
    h = g(pre)
  return h


def _check_fit(backbone: Params, adapters: Params):
  """Raises at trace time if adapters and backbone widths do not chain."""
  d_in = backbone['dense_0']['kernel'].shape[0]
  d_out = backbone[f'dense_{len(backbone) - 1}']['kernel'].shape[1]
  a_in = adapters['in']['kernel'].shape[1]
  a_out = (adapters['core']['input']['kernel'].shape[0] if 'core' in adapters
           else adapters['out']['kernel'].shape[0])
  if (a_in, a_out) != (d_in, d_out):
    raise ValueError(
        f'adapters map to/from widths ({a_in}, {a_out}) but the backbone has '
        f'input width {d_in} and output width {d_out}; build adapters with '
        'the same PolicyConfig.widths as the backbone.')


def _features(backbone, adapters, obs, config):
  _check_fit(backbone, adapters)
  return backbone_features(backbone, dense(adapters['in'], obs), config.activation, adapters)


def _head(adapters, h, config) -> PolicyOutput:
  loc, raw_scale = jnp.split(dense(adapters['out'], h), 2, axis=-1)
  scale = jax.nn.softplus(raw_scale) + config.min_scale
  return PolicyOutput(loc=loc, scale=scale, action=jnp.tanh(loc))


def apply(backbone: Params, adapters: Params, obs: jax.Array,
          config: PolicyConfig = PolicyConfig()) -> PolicyOutput:
  """Policy distribution for `obs: [..., obs_size]` (any leading axes); feed-forward only."""
  if 'core' in adapters:
    raise ValueError('this policy has a recurrent core; call policy.apply_step or '
                     'policy.apply_sequence with its carry.')
  return _head(adapters, _features(backbone, adapters, obs, config), config)


def initial_carry(batch_shape: tuple, config: PolicyConfig) -> jax.Array:
  """Zero carry [*batch_shape, core_size] (a [..., 0] array for a feed-forward policy)."""
  return jnp.zeros((*batch_shape, config.core_size), jnp.float32)


def apply_step(backbone: Params, adapters: Params, obs: jax.Array, carry: jax.Array,
               config: PolicyConfig = PolicyConfig()):
  """One step, with or without a core: obs [..., obs_size], carry [..., H] -> (out, carry')."""
  h = _features(backbone, adapters, obs, config)
  if 'core' not in adapters:
    return _head(adapters, h, config), carry
  carry = recurrent.step(adapters['core'], carry, h)
  return _head(adapters, carry, config), carry


def apply_sequence(backbone: Params, adapters: Params, obs: jax.Array, carry: jax.Array,
                   resets: jax.Array, config: PolicyConfig = PolicyConfig()):
  """Outputs over time: obs [T, ..., obs_size], carry [..., H] (before step 0),
  resets [T, ...] (1: zero the carry before step t). Returns (out [T, ...], carries
  [T, ..., H] after each step). The backbone runs once over all T steps; only the
  GRU is scanned.
  """
  h = _features(backbone, adapters, obs, config)
  if 'core' not in adapters:
    return _head(adapters, h, config), jnp.broadcast_to(carry, (*h.shape[:-1], carry.shape[-1]))

  def body(carry, inputs):
    h_t, reset_t = inputs
    carry = recurrent.step(adapters['core'], carry * (1.0 - reset_t[..., None]), h_t)
    return carry, carry

  _, carries = jax.lax.scan(body, carry, (h, resets))
  return _head(adapters, carries, config), carries


# -- the tanh-squashed Gaussian ------------------------------------------------
def sample_and_log_prob(rng: jax.Array, out: PolicyOutput):
  """Reparameterised sample a = tanh(u), u ~ N(loc, scale), and log pi(a).

  Returns (action [..., A], log_prob [...]); log_prob includes the tanh
  change-of-variables term log(1 - tanh(u)^2), computed stably.
  """
  u = sample_pre_tanh(rng, out)
  return jnp.tanh(u), log_prob_pre_tanh(out, u)


def sample_pre_tanh(rng: jax.Array, out: PolicyOutput) -> jax.Array:
  """u ~ N(loc, scale): [..., A]; the action is tanh(u)."""
  return out.loc + out.scale * jax.random.normal(rng, out.loc.shape)


def _log_det_tanh(u):
  # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u))
  return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def log_prob_pre_tanh(out: PolicyOutput, u: jax.Array) -> jax.Array:
  """log pi(tanh(u)) [...] of the squashed Gaussian, for the pre-squash sample u [..., A]."""
  normal = -0.5 * jnp.square((u - out.loc) / out.scale) - jnp.log(
      out.scale) - 0.5 * jnp.log(2 * jnp.pi)
  return jnp.sum(normal - _log_det_tanh(u), axis=-1)


def entropy(rng: jax.Array, out: PolicyOutput) -> jax.Array:
  """Entropy [...] of the squashed Gaussian: the Normal's, plus E[log|d tanh/du|] at one sample
  (no closed form exists; brax.training estimates it the same way)."""
  normal = jnp.sum(0.5 + 0.5 * jnp.log(2 * jnp.pi) + jnp.log(out.scale), axis=-1)
  return normal + jnp.sum(_log_det_tanh(sample_pre_tanh(rng, out)), axis=-1)

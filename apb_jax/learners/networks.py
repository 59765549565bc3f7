"""Critics and the trainable view of the actor, for both trainability modes.

Actor. The per-task trainable actor tree is `{'adapters': ...}` in modes
'adapters' and 'shared' (the backbone is passed separately: frozen and never
seen by a gradient or optimiser in 'adapters', one shared copy trained by the
task-mean gradient in 'shared', see agents.py) and `{'backbone': ...,
'adapters': ...}` in modes 'all' and 'tied'. `actor_apply(actor, obs)` hides the
difference.

Critic. Twin Q networks, j = 1, 2, whose params are stacked on a leading axis
of size 2 and applied with `jax.vmap`, in one of two layouts (`config.critic_mode`):
  * 'mlp': `Q_j(s, a) = MLP_j([s, a])`, sizes (obs + act, *critic_widths, 1),
    params `{'dense_i'}`: a fresh critic, every leaf trained (standard RL);
  * 'adapters', 'all', 'shared': the APB layout, the policy's own structure,
        Q_j(s, a) = W_out_j . f_j(W_in_j [s, a] + b_in_j) + b_out_j,
    params `{'backbone': f_j's {'dense_i'}, 'adapters': {'in', 'out'}}` with
    `f_j = policy.backbone_features` over widths `critic_widths` (relu), so
    critic_widths=(256, 256) is the same function class as the 'mlp' critic
    (in -> 256 -> 256 -> 1). What trains: 'adapters' the adapters only
    (`optim.adapters_only`; the backbone is frozen bit for bit, and is its own
    target); 'all' every leaf, per task; 'shared' (meta-training) per-task
    adapters and a backbone whose gradient is the task mean, so the tasks'
    copies, which start equal, stay equal: one critic backbone for all tasks.
The twin backbone comes from outside (`init_critic_backbone`, or a
meta-trained one); the adapters are fresh, or given (the critic's adapter origin).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from apb_jax import policy
from apb_jax.learners import shared
from apb_jax.learners.config import LearnerConfig


def trainable_actor(params, config: LearnerConfig):
  """The leaves that train in `config.mode`, from full `{'backbone', 'adapters'}`."""
  if config.mode not in shared.WHOLE_ACTOR_MODES:
    return {'adapters': params['adapters']}
  return {'backbone': params['backbone'], 'adapters': params['adapters']}


def actor_apply(actor, obs, backbone, config: LearnerConfig) -> policy.PolicyOutput:
  """Policy output for `obs: [..., obs_size]`; `backbone` is used in mode 'adapters'."""
  return policy.apply(actor.get('backbone', backbone), actor['adapters'], obs,
                      config.policy)


def actor_step(actor, obs, carry, backbone, config):
  """`policy.apply_step` on the trainable actor view: obs [..., obs], carry [..., H]."""
  return policy.apply_step(actor.get('backbone', backbone), actor['adapters'], obs, carry,
                           config.policy)


def actor_sequence(actor, obs, carry, resets, backbone, config):
  """`policy.apply_sequence` on the trainable actor view: obs [T, ..., obs], resets [T, ...]."""
  return policy.apply_sequence(actor.get('backbone', backbone), actor['adapters'], obs, carry,
                               resets, config.policy)


def actor_optimizer(tx, config):
  """`all_params(tx)` in mode 'all', else `adapters_only(tx)` for the per-task actor."""
  return shared.actor_tx(tx, config.mode, policy.frozen_adapters(config.policy))


def init_mlp(rng, sizes) -> dict:
  """ReLU MLP params `{'dense_i'}` for layer sizes `(in, *hidden, out)`; a linear last layer."""
  keys = jax.random.split(rng, len(sizes) - 1)
  return {f'dense_{i}': policy.dense_init(k, sizes[i], sizes[i + 1],
                                          1.0 if i == len(sizes) - 2 else 2.0)
          for i, k in enumerate(keys)}


def mlp_apply(params, x) -> jax.Array:
  """`x: [..., in]` -> `[..., out]` through the MLP of `init_mlp`."""
  n = len(params)
  for i in range(n):
    x = policy.dense(params[f'dense_{i}'], x)
    if i < n - 1:
      x = jax.nn.relu(x)
  return x


def init_critic_backbone(rng, widths) -> dict:
  """A random twin critic backbone over `widths` (d_0, ..., d_L): leaves [2, ...]."""
  config = policy.PolicyConfig(widths=tuple(widths))
  return jax.vmap(lambda k: policy.init_backbone(k, config))(jax.random.split(rng, 2))


def init_critic_adapters(rng, obs_size: int, action_size: int, widths) -> dict:
  """Fresh twin critic adapters `{'in', 'out'}`, leaves [2, ...], for a backbone of `widths`."""
  def adapters(k):   # gains as init_mlp's: relu follows the input adapter, the output is linear
    k_in, k_out = jax.random.split(k)
    return {'in': policy.dense_init(k_in, obs_size + action_size, widths[0], 2.0),
            'out': policy.dense_init(k_out, widths[-1], 1, 1.0)}
  return jax.vmap(adapters)(jax.random.split(rng, 2))


def init_critic(rng, obs_size: int, action_size: int, config: LearnerConfig, backbone=None,
                adapters=None):
  """Twin critic params, each leaf with leading axis 2: a fresh MLP in critic_mode 'mlp', else
  `{'backbone': backbone, 'adapters': adapters}` (`backbone` from `init_critic_backbone`;
  `adapters` given, e.g. the critic's adapter origin, or None: fresh from `rng`)."""
  if config.critic_mode == 'mlp':
    sizes = (obs_size + action_size, *config.critic_widths, 1)
    return jax.vmap(lambda k: init_mlp(k, sizes))(jax.random.split(rng, 2))
  if backbone is None:
    raise ValueError(f"critic_mode={config.critic_mode!r} needs a critic backbone; pass "
                     "init_params['critic_backbone'] = networks.init_critic_backbone(rng, "
                     'config.critic_widths) or a meta-trained one.')
  if adapters is None:
    adapters = init_critic_adapters(rng, obs_size, action_size, config.critic_widths)
  return {'backbone': backbone, 'adapters': adapters}


def q_apply(params, x) -> jax.Array:
  """One critic of the twin: `x: [..., in]` -> `[...]`, in either layout."""
  if 'adapters' not in params:
    return mlp_apply(params, x)[..., 0]
  a = params['adapters']
  h = policy.backbone_features(params['backbone'], policy.dense(a['in'], x))
  return policy.dense(a['out'], h)[..., 0]


def critic_apply(critic, obs, action) -> jax.Array:
  """Q values `[2, ...]` for `obs: [..., obs_size]`, `action: [..., action_size]`."""
  x = jnp.concatenate([obs, action], axis=-1)
  return jax.vmap(lambda params: q_apply(params, x))(critic)

"""Critics and the trainable view of the actor, for both trainability modes.

Actor. The per-task trainable actor tree is `{'adapters': ...}` in modes
'adapters' and 'shared' (the backbone is passed separately: frozen and never
seen by a gradient or optimiser in 'adapters', one shared copy trained by the
task-mean gradient in 'shared', see agents.py) and `{'backbone': ...,
'adapters': ...}` in modes 'all' and 'tied'. `actor_apply(actor, obs)` hides the
difference.

Critic. Twin Q networks, `Q_j(s, a) = MLP_j([s, a])`, j = 1, 2, whose params
are stacked on a leading axis of size 2 and applied with `jax.vmap`.
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
  return shared.actor_tx(tx, config.mode)


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


def init_critic(rng, obs_size: int, action_size: int, config: LearnerConfig):
  """Twin critic params, each leaf with leading axis 2."""
  sizes = (obs_size + action_size, *config.critic_widths, 1)
  return jax.vmap(lambda k: init_mlp(k, sizes))(jax.random.split(rng, 2))


def critic_apply(critic, obs, action) -> jax.Array:
  """Q values `[2, ...]` for `obs: [..., obs_size]`, `action: [..., action_size]`."""
  x = jnp.concatenate([obs, action], axis=-1)
  return jax.vmap(lambda params: mlp_apply(params, x)[..., 0])(critic)

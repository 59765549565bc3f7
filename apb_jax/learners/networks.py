"""Critics and the trainable view of the actor, for both trainability modes.

Actor. The per-task trainable actor tree is `{'adapters': ...}` in modes
'adapters' and 'shared' (the backbone is passed separately: frozen and never
seen by a gradient or optimiser in 'adapters', one shared copy trained by the
task-mean gradient in 'shared', see agents.py) and `{'backbone': ...,
'adapters': ...}` in mode 'all'. `actor_apply(actor, obs)` hides the
difference.

Critic. Twin Q networks, `Q_j(s, a) = MLP_j([s, a])`, j = 1, 2, whose params
are stacked on a leading axis of size 2 and applied with `jax.vmap`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from apb_jax import optim, policy
from apb_jax.learners.config import LearnerConfig


def trainable_actor(params, config: LearnerConfig):
  """The leaves that train in `config.mode`, from full `{'backbone', 'adapters'}`."""
  if config.mode != 'all':
    return {'adapters': params['adapters']}
  return {'backbone': params['backbone'], 'adapters': params['adapters']}


def actor_apply(actor, obs, backbone, config: LearnerConfig) -> policy.PolicyOutput:
  """Policy output for `obs: [..., obs_size]`; `backbone` is used in mode 'adapters'."""
  return policy.apply(actor.get('backbone', backbone), actor['adapters'], obs,
                      config.policy)


def actor_optimizer(tx, config: LearnerConfig):
  """`all_params(tx)` in mode 'all', else `adapters_only(tx)` for the per-task actor."""
  return optim.all_params(tx) if config.mode == 'all' else optim.adapters_only(tx)


def init_critic(rng, obs_size: int, action_size: int, config: LearnerConfig):
  """Twin critic params, each leaf with leading axis 2."""
  widths = (obs_size + action_size, *config.critic_widths, 1)

  def one(key):
    keys = jax.random.split(key, len(widths) - 1)
    return {f'dense_{i}': policy.dense_init(k, widths[i], widths[i + 1], 1.0 if i == len(widths) - 2 else 2.0)
            for i, k in enumerate(keys)}

  return jax.vmap(one)(jax.random.split(rng, 2))


def critic_apply(critic, obs, action) -> jax.Array:
  """Q values `[2, ...]` for `obs: [..., obs_size]`, `action: [..., action_size]`."""
  x = jnp.concatenate([obs, action], axis=-1)

  def one(params):
    h = x
    n = len(params)
    for i in range(n):
      h = policy.dense(params[f'dense_{i}'], h)
      if i < n - 1:
        h = jax.nn.relu(h)
    return h[..., 0]

  return jax.vmap(one)(critic)

"""Meta-training the shared backbone on the `train` tasks: by multi-task RL or by distillation.

Route 'rl' (the paper's): the learner in mode 'shared' over K train tasks at
once: per-task adapters, critics, replay and envs, and ONE backbone whose
gradient is the mean over tasks of the per-task actor gradients (see
learners/agents.py). Output: the backbone and the K train adapters.

Route 'bc': (1) per-task experts, each a full policy trained with the learner
in mode 'all'; (2) `demonstrations`: the experts act (deterministic action plus
Gaussian behaviour noise, so states off the expert's path are labelled too,
as in DART) and every visited state is labelled with the expert's
deterministic action; (3) `distill`: one shared backbone and K adapters fit
all experts by behaviour cloning, loss = mean over tasks of the mean squared
error between tanh(loc) and the expert action. As in route 'rl', the
backbone's gradient is the task mean (Adam is invariant to the 1/K on the
adapters' gradients). The student sees the observations normalised with each
expert's statistics.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from apb_jax import policy
from apb_jax.learners import agents
from apb_jax.learners.train import STATE_AXES
from apb_jax.tasks.base import rollout

METHODS = ('rl', 'bc')   # --config.meta.method


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  steps: int = 2_000          # Adam steps
  batch_size: int = 256       # states per task per step
  lr: float = 1e-3
  demo_steps: int = 8_192     # labelled states per task
  behaviour_noise: float = 0.2


def demonstrations(env, experts, config, rng, steps: int, behaviour_noise: float,
                   state_axes=STATE_AXES):
  """Labelled states from K experts: (obs_n [K, N, obs], action [K, N, act]), N = steps.

  `experts` is a finished learner state (mode 'all', leaves [K, ...]) of SAC/TD3
  (`state_axes` = train.STATE_AXES) or PPO (ppo.STATE_AXES), feed-forward;
  `steps` a multiple of `config.num_envs`; the experts act with
  `behaviour_noise` * N(0, 1) added to their deterministic action.
  """
  def one(ls, rng):
    def act(obs, key):
      obs_n = agents.normalize(ls.agent, obs, config)
      label = agents.deterministic_action(ls.agent.actor, obs_n, ls.shared.backbone, config)
      noisy = jnp.clip(label + behaviour_noise * jax.random.normal(key, label.shape), -1, 1)
      return noisy, (obs_n, label)

    _, (_, (obs, label)) = rollout(env, ls.env_state, rng, steps // config.num_envs, act)
    return obs.reshape(-1, obs.shape[-1]), label.reshape(-1, label.shape[-1])

  k = jax.tree.leaves(experts.rng)[0].shape[0]
  return jax.vmap(one, in_axes=(state_axes, 0))(experts, jax.random.split(rng, k))


def distill(rng, obs, actions, params, policy_config: policy.PolicyConfig,
            config: DistillConfig):
  """Behaviour cloning of K experts into `params = {'backbone', 'adapters' [K, ...]}`.

  obs: [K, N, obs_size] (normalised), actions: [K, N, action_size].
  Returns the fitted params and the loss after each step [steps].
  """
  k, n = obs.shape[:2]
  tx = optax.adam(config.lr)

  def loss_fn(params, o, a):
    def one(adapters, o, a):
      loc = policy.apply(params['backbone'], adapters, o, policy_config).loc
      return jnp.mean(jnp.sum(jnp.square(jnp.tanh(loc) - a), axis=-1))
    return jnp.mean(jax.vmap(one)(params['adapters'], o, a))

  def step(carry, key):
    params, opt = carry
    idx = jax.random.randint(key, (k, config.batch_size), 0, n)
    o = jnp.take_along_axis(obs, idx[..., None], axis=1)
    a = jnp.take_along_axis(actions, idx[..., None], axis=1)
    loss, grads = jax.value_and_grad(loss_fn)(params, o, a)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), opt), loss

  (params, _), losses = jax.lax.scan(step, (params, tx.init(params)),
                                     jax.random.split(rng, config.steps))
  return params, losses

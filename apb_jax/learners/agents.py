"""SAC and TD3 for one task: state, exploration and one gradient update.

Everything here is written for a single task (no `[task]` axis); the train
loop vmaps it. `backbone` is the frozen backbone in mode 'adapters' (closed
over by the losses, so no gradient or optimiser ever sees it) and unused in
mode 'all', where it is part of the trainable actor.

SAC (Haarnoja et al. 2018): twin critics with Polyak targets, a tanh-Gaussian
actor, temperature alpha learned towards entropy -|A|.
TD3 (Fujimoto et al. 2018): deterministic actor tanh(loc), twin critics,
target policy smoothing, actor and targets updated every `policy_delay`
critic updates.
Both bootstrap through truncation: `terminal = done * (1 - truncation)`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from apb_jax import policy
from apb_jax.learners import networks, normalizer
from apb_jax.learners import replay as replay_lib
from apb_jax.learners.config import LearnerConfig


class Transition(NamedTuple):
  obs: jax.Array        # [obs_size]
  action: jax.Array     # [action_size]
  reward: jax.Array     # []
  next_obs: jax.Array   # [obs_size], the true next obs (before any auto-reset)
  terminal: jax.Array   # [] 1 where the episode terminated (not truncated)


@struct.dataclass
class AgentState:
  """Learnable state of one task (the loop adds env, replay and rng)."""

  actor: Any              # trainable actor tree (see networks.trainable_actor)
  target_actor: Any       # TD3 only; {} for SAC
  actor_opt: Any
  critic: Any             # twin critic, leaves [2, ...]
  target_critic: Any
  critic_opt: Any
  log_alpha: jax.Array    # [] (SAC; unused by TD3)
  alpha_opt: Any
  obs_stats: normalizer.Normalizer


def _adam(lr):
  return optax.adam(lr)


def init(rng, params, obs_size, action_size, config: LearnerConfig) -> AgentState:
  """Agent state from the actor's initial `params` and a fresh critic."""
  actor = networks.trainable_actor(params, config)
  critic = networks.init_critic(rng, obs_size, action_size, config)
  log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
  return AgentState(
      actor=actor,
      target_actor=actor if config.algo == 'td3' else {},
      actor_opt=networks.actor_optimizer(_adam(config.actor_lr), config).init(actor),
      critic=critic, target_critic=critic,
      critic_opt=_adam(config.critic_lr).init(critic),
      log_alpha=log_alpha, alpha_opt=_adam(config.alpha_lr).init(log_alpha),
      obs_stats=normalizer.init(obs_size))


def normalize(agent: AgentState, obs, config: LearnerConfig):
  return normalizer.normalize(agent.obs_stats, obs) if config.normalize_obs else obs


def deterministic_action(actor, obs_n, backbone, config):
  return networks.actor_apply(actor, obs_n, backbone, config).action


def explore_action(rng, agent: AgentState, obs_n, backbone, config: LearnerConfig):
  """Action-space exploration: SAC samples pi; TD3 adds clipped Gaussian noise."""
  out = networks.actor_apply(agent.actor, obs_n, backbone, config)
  if config.algo == 'sac':
    return policy.sample_and_log_prob(rng, out)[0]
  noise = config.action_noise * jax.random.normal(rng, out.action.shape)
  return jnp.clip(out.action + noise, -1.0, 1.0)


def _polyak(target, online, tau):
  return jax.tree.map(lambda t, o: (1 - tau) * t + tau * o, target, online)


def _critic_step(agent, obs_n, batch, target_q_next, config):
  """One critic step towards r + gamma (1 - terminal) target_q_next."""
  target = config.reward_scale * batch.reward + config.gamma * (
      1.0 - batch.terminal) * target_q_next
  target = jax.lax.stop_gradient(target)

  def loss_fn(critic):
    q = networks.critic_apply(critic, obs_n, batch.action)      # [2, B]
    return 0.5 * jnp.mean(jnp.sum(jnp.square(q - target), axis=0))

  loss, grads = jax.value_and_grad(loss_fn)(agent.critic)
  updates, opt = _adam(config.critic_lr).update(grads, agent.critic_opt, agent.critic)
  return agent.replace(critic=optax.apply_updates(agent.critic, updates),
                       critic_opt=opt), loss


def _actor_step(agent, loss_fn, config):
  tx = networks.actor_optimizer(_adam(config.actor_lr), config)
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(agent.actor)
  updates, opt = tx.update(grads, agent.actor_opt, agent.actor)
  return agent.replace(actor=optax.apply_updates(agent.actor, updates),
                       actor_opt=opt), loss, aux


def sac_update(agent: AgentState, batch: Transition, rng, backbone,
               config: LearnerConfig, update_index):
  """One SAC update (critic, actor, temperature) on `batch` (leaves [B, ...])."""
  del update_index
  k_next, k_pi = jax.random.split(rng)
  obs_n, next_obs_n = normalize(agent, batch.obs, config), normalize(agent, batch.next_obs, config)
  alpha = jnp.exp(agent.log_alpha)

  next_out = networks.actor_apply(agent.actor, next_obs_n, backbone, config)
  next_a, next_logp = policy.sample_and_log_prob(k_next, next_out)
  q_next = jnp.min(networks.critic_apply(agent.target_critic, next_obs_n, next_a), axis=0)
  agent, critic_loss = _critic_step(agent, obs_n, batch, q_next - alpha * next_logp, config)

  def actor_loss(actor):
    out = networks.actor_apply(actor, obs_n, backbone, config)
    a, logp = policy.sample_and_log_prob(k_pi, out)
    q = jnp.min(networks.critic_apply(agent.critic, obs_n, a), axis=0)
    return jnp.mean(alpha * logp - q), logp

  agent, actor_loss_value, logp = _actor_step(agent, actor_loss, config)

  target_entropy = -float(batch.action.shape[-1])
  alpha_grad = jax.grad(lambda la: -la * jnp.mean(jax.lax.stop_gradient(logp) + target_entropy))(
      agent.log_alpha)
  alpha_upd, alpha_opt = _adam(config.alpha_lr).update(alpha_grad, agent.alpha_opt)
  agent = agent.replace(
      log_alpha=optax.apply_updates(agent.log_alpha, alpha_upd), alpha_opt=alpha_opt,
      target_critic=_polyak(agent.target_critic, agent.critic, config.tau))
  return agent, {'critic_loss': critic_loss, 'actor_loss': actor_loss_value,
                 'alpha': jnp.exp(agent.log_alpha)}


def td3_update(agent: AgentState, batch: Transition, rng, backbone,
               config: LearnerConfig, update_index):
  """One TD3 critic update; actor and targets every `policy_delay` updates."""
  obs_n, next_obs_n = normalize(agent, batch.obs, config), normalize(agent, batch.next_obs, config)
  next_a = deterministic_action(agent.target_actor, next_obs_n, backbone, config)
  noise = jnp.clip(config.policy_noise * jax.random.normal(rng, next_a.shape),
                   -config.noise_clip, config.noise_clip)
  next_a = jnp.clip(next_a + noise, -1.0, 1.0)
  q_next = jnp.min(networks.critic_apply(agent.target_critic, next_obs_n, next_a), axis=0)
  agent, critic_loss = _critic_step(agent, obs_n, batch, q_next, config)

  def actor_loss(actor):
    a = deterministic_action(actor, obs_n, backbone, config)
    return -jnp.mean(networks.critic_apply(agent.critic, obs_n, a)[0]), ()

  def delayed(agent):
    agent, loss, _ = _actor_step(agent, actor_loss, config)
    return agent.replace(
        target_actor=_polyak(agent.target_actor, agent.actor, config.tau),
        target_critic=_polyak(agent.target_critic, agent.critic, config.tau)), loss

  # `update_index` is the same for every task, so this is a real branch even
  # under the task vmap (no wasted actor update on the skipped steps).
  agent, actor_loss_value = jax.lax.cond(
      update_index % config.policy_delay == 0, delayed,
      lambda a: (a, jnp.zeros(())), agent)
  return agent, {'critic_loss': critic_loss, 'actor_loss': actor_loss_value,
                 'alpha': jnp.zeros(())}


UPDATES = {'sac': sac_update, 'td3': td3_update}


def sample_batches(buffer: replay_lib.Replay, rng, config: LearnerConfig) -> Transition:
  """`grad_updates_per_step` batches, drawn with one gather: leaves [G, B, ...]."""
  g, b = config.grad_updates_per_step, config.batch_size
  return jax.tree.map(lambda x: x.reshape(g, b, *x.shape[1:]),
                      replay_lib.sample(buffer, rng, g * b))


def updates(agent, batches: Transition, rng, backbone, config: LearnerConfig, first_index):
  """One update of `config.algo` per batch of `batches` (leaves [G, B, ...]).

  Returns the new agent and the metrics averaged over the updates.
  """

  def one(agent, inputs):
    j, batch = inputs
    return UPDATES[config.algo](agent, batch, jax.random.fold_in(rng, j), backbone,
                                config, first_index + j)

  g = jax.tree.leaves(batches)[0].shape[0]
  agent, metrics = jax.lax.scan(one, agent, (jnp.arange(g), batches))
  return agent, jax.tree.map(jnp.mean, metrics)

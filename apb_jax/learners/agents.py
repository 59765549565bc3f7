"""SAC and TD3 for one task: state, exploration and one gradient update.

Everything here is written for a single task (no `[task]` axis); the train
loop vmaps it. What the tasks share is `Shared(backbone, backbone_opt)`, an
unbatched argument of the vmapped code, moved (in mode 'shared') by
`shared.actor_update`; see learners/shared.py.

SAC (Haarnoja et al. 2018): twin critics with Polyak targets, a tanh-Gaussian
actor, temperature alpha learned towards entropy -|A|. In mode 'tied' (one set of
networks for all tasks, e.g. PEARL's) every gradient is the task mean.
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

from apb_jax import optim, policy
from apb_jax.learners import networks, normalizer
from apb_jax.learners import replay as replay_lib
from apb_jax.learners import shared as shared_lib
from apb_jax.learners.config import LearnerConfig
from apb_jax.learners.shared import TASK_AXIS, Shared  # noqa: F401  (re-exported)


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


def init_shared(backbone, config: LearnerConfig) -> Shared:
  return shared_lib.init(backbone, _adam(config.actor_lr), config.mode)


def critic_optimizer(config: LearnerConfig) -> optax.GradientTransformation:
  """Adam on the critic; in critic_mode 'adapters' on its adapters only (backbone frozen)."""
  tx = _adam(config.critic_lr)
  return optim.adapters_only(tx) if config.critic_mode == 'adapters' else optim.all_params(tx)


def init(rng, params, obs_size, action_size, config: LearnerConfig,
         critic_backbone=None, critic_adapters=None) -> AgentState:
  """Agent state from the actor's initial `params` and a critic with fresh adapters (or a fresh
  MLP, in critic_mode 'mlp'); `critic_backbone`: the APB critic's twin backbone;
  `critic_adapters`: its adapters at the start (None: fresh)."""
  actor = networks.trainable_actor(params, config)
  critic = networks.init_critic(rng, obs_size, action_size, config, critic_backbone,
                                critic_adapters)
  log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
  return AgentState(
      actor=actor,
      target_actor=actor if config.algo == 'td3' else {},
      actor_opt=networks.actor_optimizer(_adam(config.actor_lr), config).init(actor),
      critic=critic, target_critic=critic,
      critic_opt=critic_optimizer(config).init(critic),
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


def polyak_critic(target, online, config: LearnerConfig):
  """The target critic moved towards `online` by `tau`; a frozen critic backbone is its own
  target (averaging it with itself would move it by rounding)."""
  if config.critic_mode == 'adapters':
    return dict(target, adapters=_polyak(target['adapters'], online['adapters'], config.tau))
  return _polyak(target, online, config.tau)


def tied_mean(grads, config):
  """The task-mean gradient in mode 'tied' (one set of networks for all tasks), else `grads`."""
  return jax.lax.pmean(grads, TASK_AXIS) if config.mode == 'tied' else grads


def td_target(batch, q_next, config) -> jax.Array:
  """[B] r + gamma (1 - terminal) q_next, a constant for the critic's gradient."""
  return jax.lax.stop_gradient(config.reward_scale * batch.reward + config.gamma * (
      1.0 - batch.terminal) * q_next)


def critic_loss(critic, obs_n, action, target) -> jax.Array:
  """Twin-critic squared TD error: 0.5 mean_B sum_j (Q_j(s, a) - target)^2."""
  q = networks.critic_apply(critic, obs_n, action)      # [2, B]
  return 0.5 * jnp.mean(jnp.sum(jnp.square(q - target), axis=0))


def sac_next_value(agent, next_obs_n, rng, backbone, config) -> jax.Array:
  """[B] SAC's soft value of the next obs: min_j Q'_j(s', a') - alpha log pi(a'|s'), a' ~ pi."""
  next_out = networks.actor_apply(agent.actor, next_obs_n, backbone, config)
  next_a, next_logp = policy.sample_and_log_prob(rng, next_out)
  q_next = jnp.min(networks.critic_apply(agent.target_critic, next_obs_n, next_a), axis=0)
  return q_next - jnp.exp(agent.log_alpha) * next_logp


def _critic_step(agent, obs_n, batch, target_q_next, config):
  """One critic step towards r + gamma (1 - terminal) target_q_next."""
  target = td_target(batch, target_q_next, config)
  loss, grads = jax.value_and_grad(critic_loss)(agent.critic, obs_n, batch.action, target)
  grads = tied_mean(grads, config)
  if config.critic_mode == 'shared':     # one critic backbone: its gradient is the task mean
    grads = dict(grads, backbone=jax.lax.pmean(grads['backbone'], TASK_AXIS))
  updates, opt = critic_optimizer(config).update(grads, agent.critic_opt, agent.critic)
  return agent.replace(critic=optax.apply_updates(agent.critic, updates),
                       critic_opt=opt), loss


def _actor_step(agent, shared: Shared, loss_fn, config):
  """One actor step on `loss_fn(actor, backbone) -> (loss, aux)`.

  In mode 'shared' the backbone also steps, by the task-mean of its gradient.
  """
  actor, opt, shared, loss, aux = shared_lib.actor_update(
      agent.actor, agent.actor_opt, shared, loss_fn, _adam(config.actor_lr), config.mode,
      policy.frozen_adapters(config.policy))
  return agent.replace(actor=actor, actor_opt=opt), shared, loss, aux


def _after_actor_delay(step, agent, shared, config: LearnerConfig, update_index):
  """`step(agent, shared) -> (agent, shared, actor loss)` from `config.first_actor_update` on;
  before it, nothing moves (loss 0). `update_index` is the same for every task, so this is a
  real branch under the task vmap."""
  if not config.actor_delay:
    return step(agent, shared)
  return jax.lax.cond(update_index >= config.first_actor_update, step,
                      lambda a, s: (a, s, jnp.zeros(())), agent, shared)


def sac_update(agent: AgentState, shared: Shared, batch: Transition, rng,
               config: LearnerConfig, update_index):
  """One SAC update (critic; then, after `config.actor_delay`, actor and temperature) on
  `batch` (leaves [B, ...])."""
  backbone = shared.backbone
  k_next, k_pi = jax.random.split(rng)
  obs_n, next_obs_n = normalize(agent, batch.obs, config), normalize(agent, batch.next_obs, config)
  alpha = jnp.exp(agent.log_alpha)

  agent, critic_loss_value = _critic_step(
      agent, obs_n, batch, sac_next_value(agent, next_obs_n, k_next, backbone, config), config)

  def actor_loss(actor, backbone):
    out = networks.actor_apply(actor, obs_n, backbone, config)
    a, logp = policy.sample_and_log_prob(k_pi, out)
    q = jnp.min(networks.critic_apply(agent.critic, obs_n, a), axis=0)
    return jnp.mean(alpha * logp - q), logp

  def actor_and_alpha(agent, shared):
    agent, shared, actor_loss_value, logp = _actor_step(agent, shared, actor_loss, config)
    target_entropy = -float(batch.action.shape[-1])
    alpha_grad = jax.grad(lambda la: -la * jnp.mean(
        jax.lax.stop_gradient(logp) + target_entropy))(agent.log_alpha)
    alpha_upd, alpha_opt = _adam(config.alpha_lr).update(tied_mean(alpha_grad, config),
                                                         agent.alpha_opt)
    return agent.replace(log_alpha=optax.apply_updates(agent.log_alpha, alpha_upd),
                         alpha_opt=alpha_opt), shared, actor_loss_value

  agent, shared, actor_loss_value = _after_actor_delay(actor_and_alpha, agent, shared, config,
                                                       update_index)
  agent = agent.replace(target_critic=polyak_critic(agent.target_critic, agent.critic, config))
  return agent, shared, {'critic_loss': critic_loss_value, 'actor_loss': actor_loss_value,
                         'alpha': jnp.exp(agent.log_alpha)}


def td3_update(agent: AgentState, shared: Shared, batch: Transition, rng,
               config: LearnerConfig, update_index):
  """One TD3 critic update; actor and targets every `policy_delay` updates."""
  backbone = shared.backbone
  obs_n, next_obs_n = normalize(agent, batch.obs, config), normalize(agent, batch.next_obs, config)
  next_a = deterministic_action(agent.target_actor, next_obs_n, backbone, config)
  noise = jnp.clip(config.policy_noise * jax.random.normal(rng, next_a.shape),
                   -config.noise_clip, config.noise_clip)
  next_a = jnp.clip(next_a + noise, -1.0, 1.0)
  q_next = jnp.min(networks.critic_apply(agent.target_critic, next_obs_n, next_a), axis=0)
  agent, critic_loss_value = _critic_step(agent, obs_n, batch, q_next, config)

  def actor_loss(actor, backbone):
    a = deterministic_action(actor, obs_n, backbone, config)
    return -jnp.mean(networks.critic_apply(agent.critic, obs_n, a)[0]), ()

  def actor_step(agent, shared):
    agent, shared, loss, _ = _actor_step(agent, shared, actor_loss, config)
    return agent, shared, loss

  def delayed(agent, shared):
    agent, shared, loss = _after_actor_delay(actor_step, agent, shared, config, update_index)
    return agent.replace(
        target_actor=_polyak(agent.target_actor, agent.actor, config.tau),
        target_critic=polyak_critic(agent.target_critic, agent.critic, config)), shared, loss

  # `update_index` is the same for every task, so this is a real branch even
  # under the task vmap (no wasted actor update on the skipped steps).
  agent, shared, actor_loss_value = jax.lax.cond(
      update_index % config.policy_delay == 0, delayed,
      lambda a, s: (a, s, jnp.zeros(())), agent, shared)
  return agent, shared, {'critic_loss': critic_loss_value, 'actor_loss': actor_loss_value,
                         'alpha': jnp.zeros(())}


UPDATES = {'sac': sac_update, 'td3': td3_update}


def sample_batches(buffer: replay_lib.Replay, rng, config: LearnerConfig) -> Transition:
  """`grad_updates_per_step` batches, drawn with one gather: leaves [G, B, ...]."""
  g, b = config.grad_updates_per_step, config.batch_size
  return jax.tree.map(lambda x: x.reshape(g, b, *x.shape[1:]),
                      replay_lib.sample(buffer, rng, g * b))


def updates(agent, shared: Shared, batches: Transition, rng, config: LearnerConfig,
            first_index):
  """One update of `config.algo` per batch of `batches` (leaves [G, B, ...]).

  Returns the new agent, the new shared state and the metrics averaged over
  the updates.
  """

  def one(carry, inputs):
    j, batch = inputs
    agent, shared, metrics = UPDATES[config.algo](
        *carry, batch, jax.random.fold_in(rng, j), config, first_index + j)
    return (agent, shared), metrics

  g = jax.tree.leaves(batches)[0].shape[0]
  (agent, shared), metrics = jax.lax.scan(one, (agent, shared), (jnp.arange(g), batches))
  return agent, shared, jax.tree.map(jnp.mean, metrics)

"""PPO (Schulman et al. 2017) over K tasks at once, on the host loop SAC and TD3 use.

    trainer = PPOTrainer(PPOConfig(mode='adapters'), family)
    result = trainer.train(rng, tasks, init_params)        # curves [task, n_evals]

One iteration, for one task (`jit(vmap(...))` over the named task axis, a
`lax.scan` of `eval_every / (num_envs * unroll_length)` iterations per chunk):
  1. rollout: `unroll_length` steps in `num_envs` envs with the tanh-Gaussian
     policy (pre-tanh sample and its log-prob stored), auto-reset of ended
     envs, the recurrent core's carry (if any) zeroed after every
     `core_reset_episodes`-th episode end of an env;
  2. the observation normaliser takes the rollout's observations;
  3. values (obs and, with a core, the carry the policy held) and GAE
     (ppo_losses.py): truncation bootstraps through the true last obs;
  4. `epochs` x `num_minibatches` updates; a minibatch is a subset of the envs
     with their whole unroll, so a recurrent policy is re-run over its sequence
     from the carry it started with. Actor: clipped surrogate minus
     `entropy_coef` x entropy, stepped by `shared.actor_update` (adapters only,
     everything, adapters + the task-mean backbone gradient, or (mode 'tied',
     one policy for all tasks) everything by the task-mean gradient);
     value: `value_coef` x 0.5 x squared error, its own optimiser. Both clip
     their gradient's global norm to `max_grad_norm`.

State leaves carry the leading `[K]` axis except `state.shared` (the backbone),
as in train.py. The value network is fresh and per task in every mode (in
mode 'tied' too: it only serves the advantages of its own task's rollouts).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from apb_jax import evaluation, policy
from apb_jax.learners import loop, networks, normalizer, ppo_losses
from apb_jax.learners import shared as shared_lib
from apb_jax.learners.config import PPOConfig
from apb_jax.learners.shared import TASK_AXIS
from apb_jax.tasks.base import reset_done, tile


@struct.dataclass
class PPOAgent:
  actor: Any              # trainable actor tree (networks.trainable_actor)
  actor_opt: Any
  value: Any              # MLP over [obs_n, carry]
  value_opt: Any
  obs_stats: normalizer.Normalizer


@struct.dataclass
class PPOState:
  agent: PPOAgent
  env_state: Any          # brax State, leaves [num_envs, ...]; the task is in info['task']
  carry: jax.Array        # [num_envs, core_size] the core's carry ([num_envs, 0]: no core)
  episodes: jax.Array     # [num_envs] int32 episode ends since the carry was last zeroed
  rng: jax.Array
  shared: shared_lib.Shared


STATE_AXES = PPOState(agent=0, env_state=0, carry=0, episodes=0, rng=0, shared=None)


class Rollout(NamedTuple):
  """One rollout of one task, leaves [T, num_envs, ...]."""

  obs: jax.Array          # raw obs the policy acted on
  next_obs: jax.Array     # the true next obs (before auto-reset)
  u: jax.Array            # pre-tanh action sample; the env got tanh(u)
  log_prob: jax.Array     # log pi_old(tanh(u))
  reward: jax.Array
  done: jax.Array         # 1: the episode ended (either way)
  terminal: jax.Array     # 1: it terminated (done and not truncated)
  carry_in: jax.Array     # the carry before step t (zeroed where the previous step reset it)
  carry_out: jax.Array    # the carry after step t
  reset_after: jax.Array  # 1: the carry is zeroed after step t


def _tx(c: PPOConfig) -> optax.GradientTransformation:
  adam = optax.adam(c.lr)
  return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), adam) if c.max_grad_norm else adam


class PPOTrainer(loop.HostLoop):
  """PPO on the tasks of one family; the host loop is `loop.HostLoop`."""

  finite_metrics = ('policy_loss', 'value_loss')
  inherits_obs_stats = True
  state_axes = STATE_AXES

  # -- initial state -------------------------------------------------------------
  def _init_one(self, rng, task, adapters, backbone) -> PPOState:
    c = self.config
    k_value, k_env, k_loop = jax.random.split(rng, 3)
    actor = networks.trainable_actor({'backbone': backbone, 'adapters': adapters}, c)
    value = networks.init_mlp(
        k_value, (self.obs_size + c.policy.core_size, *c.value_widths, 1))
    tx = _tx(c)
    agent = PPOAgent(actor=actor, actor_opt=networks.actor_optimizer(tx, c).init(actor),
                     value=value, value_opt=tx.init(value),
                     obs_stats=normalizer.init(self.obs_size))
    env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, c.num_envs),
                                         tile(task, c.num_envs))
    return PPOState(agent=agent, env_state=env_state,
                    carry=policy.initial_carry((c.num_envs,), c.policy),
                    episodes=jnp.zeros((c.num_envs,), jnp.int32), rng=k_loop,
                    shared=shared_lib.init(backbone, tx, c.mode))

  # -- pieces ------------------------------------------------------------------------
  def _normalize(self, agent: PPOAgent, obs):
    return normalizer.normalize(agent.obs_stats, obs) if self.config.normalize_obs else obs

  def _value(self, value, obs_n, carry):
    return networks.mlp_apply(value, jnp.concatenate([obs_n, carry], axis=-1))[..., 0]

  def _rollout(self, ls: PPOState, rng):
    c = self.config
    agent, backbone = ls.agent, ls.shared.backbone

    def step(carry, key):
      env_state, core, episodes = carry
      k_act, k_reset = jax.random.split(key)
      out, core_out = networks.actor_step(agent.actor, self._normalize(agent, env_state.obs),
                                          core, backbone, c)
      u = policy.sample_pre_tanh(k_act, out)
      nstate = jax.vmap(self.env.step)(env_state, jnp.tanh(u))
      ended = nstate.done > 0
      episodes = episodes + ended.astype(jnp.int32)
      reset_core = jnp.logical_and(ended, episodes % c.core_reset_episodes == 0)
      episodes = jnp.where(reset_core, 0, episodes)
      # One predicate for all tasks keeps the (costly) reset a real branch under vmap.
      any_done = jax.lax.psum(jnp.any(ended).astype(jnp.int32), TASK_AXIS) > 0
      data = Rollout(
          obs=env_state.obs, next_obs=nstate.obs, u=u, log_prob=policy.log_prob_pre_tanh(out, u),
          reward=nstate.reward, done=nstate.done,
          terminal=nstate.done * (1.0 - nstate.info['truncation']),
          carry_in=core, carry_out=core_out, reset_after=reset_core.astype(jnp.float32))
      core = core_out * (1.0 - data.reset_after[:, None])
      return (reset_done(self.env, nstate, k_reset, any_done), core, episodes), data

    (env_state, core, episodes), data = jax.lax.scan(
        step, (ls.env_state, ls.carry, ls.episodes), jax.random.split(rng, c.unroll_length))
    return ls.replace(env_state=env_state, carry=core, episodes=episodes), data

  def _minibatch_update(self, agent: PPOAgent, shared, data: Rollout, adv, target, rng):
    """One actor and one value step on a minibatch (leaves [T, m, ...])."""
    c = self.config
    obs_n = self._normalize(agent, data.obs)
    resets = jnp.concatenate([jnp.zeros_like(data.reset_after[:1]), data.reset_after[:-1]])
    if c.normalize_advantage:
      adv = ppo_losses.normalize(adv)

    def actor_loss(actor, backbone):
      out, _ = networks.actor_sequence(actor, obs_n, data.carry_in[0], resets, backbone, c)
      log_prob = policy.log_prob_pre_tanh(out, data.u)
      surrogate, clip_frac = ppo_losses.clipped_surrogate(log_prob, data.log_prob, adv,
                                                          c.clip_eps)
      entropy = jnp.mean(policy.entropy(rng, out))
      approx_kl = jnp.mean(data.log_prob - log_prob)
      return surrogate - c.entropy_coef * entropy, (surrogate, entropy, approx_kl, clip_frac)

    def value_loss(value):
      v = self._value(value, obs_n, data.carry_in)
      return c.value_coef * 0.5 * jnp.mean(jnp.square(v - target))

    tx = _tx(c)
    actor, actor_opt, shared, _, (surrogate, entropy, approx_kl, clip_frac) = (
        shared_lib.actor_update(agent.actor, agent.actor_opt, shared, actor_loss, tx, c.mode,
                                policy.frozen_adapters(c.policy)))
    v_loss, v_grads = jax.value_and_grad(value_loss)(agent.value)
    v_updates, value_opt = tx.update(v_grads, agent.value_opt, agent.value)
    agent = agent.replace(actor=actor, actor_opt=actor_opt,
                          value=optax.apply_updates(agent.value, v_updates), value_opt=value_opt)
    return agent, shared, {'policy_loss': surrogate, 'value_loss': v_loss, 'entropy': entropy,
                           'approx_kl': approx_kl, 'clip_frac': clip_frac}

  def _iteration(self, ls: PPOState, _):
    c = self.config
    rng, k_rollout, k_sgd = jax.random.split(ls.rng, 3)
    ls, data = self._rollout(ls, k_rollout)
    agent = ls.agent
    if c.normalize_obs:
      batch = data.obs.reshape(-1, self.obs_size)
      if c.mode == 'tied':   # one policy, so one normaliser: every task's copy sees all obs
        batch = jax.lax.all_gather(batch, TASK_AXIS).reshape(-1, self.obs_size)
      agent = agent.replace(obs_stats=normalizer.update(agent.obs_stats, batch))
    value = self._value(agent.value, self._normalize(agent, data.obs), data.carry_in)
    value_next = self._value(agent.value, self._normalize(agent, data.next_obs), data.carry_out)
    adv = ppo_losses.gae(c.reward_scale * data.reward, value, value_next, data.terminal,
                         data.done, c.gamma, c.gae_lambda)
    target = adv + value
    m = c.num_envs // c.num_minibatches

    def epoch(carry, key):
      k_perm, k_steps = jax.random.split(key)
      envs = jax.random.permutation(k_perm, c.num_envs).reshape(c.num_minibatches, m)

      def minibatch(carry, inputs):
        idx, k = inputs
        pick = lambda x: x[:, idx]   # noqa: E731  (envs are axis 1 of [T, E, ...])
        agent, shared, metrics = self._minibatch_update(
            *carry, jax.tree.map(pick, data), pick(adv), pick(target), k)
        return (agent, shared), metrics

      return jax.lax.scan(minibatch, carry,
                          (envs, jax.random.split(k_steps, c.num_minibatches)))

    (agent, shared), metrics = jax.lax.scan(epoch, (agent, ls.shared),
                                            jax.random.split(k_sgd, c.epochs))
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics['train_reward'] = jnp.mean(data.reward)
    return ls.replace(agent=agent, shared=shared, rng=rng), metrics

  # -- chunks and evaluation ---------------------------------------------------------
  def _chunk_one(self, ls: PPOState, chunk_index):
    del chunk_index   # PPO's schedule does not depend on it
    ls, metrics = jax.lax.scan(self._iteration, ls, None,
                               length=self.config.iterations_per_chunk)
    return ls, jax.tree.map(jnp.mean, metrics)

  def _evaluate_one(self, ls: PPOState):
    """Mean undiscounted return of the deterministic policy (tanh(loc)) over eval_episodes."""
    c = self.config

    def act(obs, key, carry):
      del key
      out, carry = networks.actor_step(ls.agent.actor, self._normalize(ls.agent, obs), carry,
                                       ls.shared.backbone, c)
      return out.action, carry

    rng = jax.random.fold_in(ls.rng, 1)   # does not advance the training stream
    task = jax.tree.map(lambda x: x[0], ls.env_state.info['task'])
    return evaluation.episode_return(
        self.env, act, rng, task, c.eval_episodes,
        carry=policy.initial_carry((c.eval_episodes,), c.policy))


def make_train(config: PPOConfig, family, per_run_backbone: bool = False) -> PPOTrainer:
  return PPOTrainer(config, family, per_run_backbone)

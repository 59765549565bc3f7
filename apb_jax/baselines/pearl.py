"""PEARL (Rakelly et al. 2019): SAC conditioned on a latent task z inferred from context.

    --config.methods=apb,scratch,pearl --config.baselines.pearl.kl_weight=0.1

Networks: our actor over [obs_n, z] (input layer -> MLP `policy.widths` ->
output layer, all trained), SAC's twin critic over [obs_n, z, a] and the
context encoder (encoder.py), ONE set for all train tasks: SAC in mode 'tied'
(task-mean gradients, agents.py), the encoder likewise. Per task: its replay
buffer (which is also its context buffer), env states and each env's z.

One iteration, per task (the off-policy loop of train.py, with z):
  1. every env acts with SAC's policy on [obs_n, z_env]; the transition goes to
     the task's buffer; an env whose episode ended draws a new z: the first
     half of the envs from the prior N(0, I) (exploration data, as PEARL's
     prior-z collection), the others from the posterior of a context of
     `context_size` transitions sampled from the task's buffer;
  2. `grad_updates_per_step` updates (after `warmup_steps`), each with its own
     context and its own z ~ q(z | context): an encoder step on the critic's
     loss at [obs_n, z] plus `kl_weight` x KL(q || N(0, I)) (critic before
     this iteration's SAC updates), then a SAC update on [obs_n, z] with z
     detached (the actor never moves the encoder).
Observations are normalised by one running normaliser for all tasks; a
context transition is [obs_n, a, r(, next_obs_n)] (`use_next_obs`: needed where
the task is in the dynamics, oyster issue #4).

Adaptation (the method's own rule): on a test task the posterior starts at the
prior; each episode of experience is played with z sampled from the current
posterior (posterior sampling) and folded into it; the curve value at env
step s is the deterministic return with z = the posterior mean after
s // episode_length episodes of context.

Reference settings: katerakelly/oyster `configs/default.py` (latent 5, KL weight
0.1, context batch 100, encoder 200 x 3, lr 3e-4).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from apb_jax import evaluation, policy, run_config
from apb_jax.baselines import encoder, pg, stage
from apb_jax.learners import agents, loop, normalizer
from apb_jax.learners import replay as replay_lib
from apb_jax.learners.config import LearnerConfig
from apb_jax.learners.shared import TASK_AXIS
from apb_jax.tasks.base import reset_done, tile


@dataclasses.dataclass(frozen=True)
class PEARLConfig:
  sac: LearnerConfig                # mode 'tied', normalize_obs False (PEARL normalises itself)
  latent_size: int = 5
  kl_weight: float = 0.1
  context_size: int = 100           # transitions per posterior while meta-training
  encoder_widths: tuple = (200, 200, 200)
  encoder_lr: float = 3e-4
  use_next_obs: bool = True
  normalize_obs: bool = True
  algo: str = 'pearl'
  mode: str = 'tied'

  def __post_init__(self):
    object.__setattr__(self, 'encoder_widths', tuple(self.encoder_widths))
    if self.sac.mode != 'tied' or self.sac.normalize_obs or self.sac.algo != 'sac':
      raise ValueError("PEARLConfig.sac must be SAC in mode 'tied' with normalize_obs=False; "
                       'build it with pearl.stage_config.')
    for field in ('latent_size', 'context_size'):
      if getattr(self, field) < 1:
        raise ValueError(f'baselines.pearl.{field}={getattr(self, field)} must be >= 1.')
    if self.kl_weight < 0 or self.encoder_lr <= 0:
      raise ValueError(f'need baselines.pearl.kl_weight >= 0 and encoder_lr > 0, got '
                       f'{self.kl_weight}, {self.encoder_lr}.')

  # The host loop's schedule is SAC's.
  total_steps = property(lambda self: self.sac.total_steps)
  eval_every = property(lambda self: self.sac.eval_every)
  num_chunks = property(lambda self: self.sac.num_chunks)
  eval_episodes = property(lambda self: self.sac.eval_episodes)


@struct.dataclass
class PEARLState:
  agent: agents.AgentState      # one actor/critic/alpha (tied copies) over [obs_n, z]
  encoder: Any                  # tied copies
  encoder_opt: Any
  obs_stats: normalizer.Normalizer   # tied copies
  replay: replay_lib.Replay     # this task's transitions, raw obs
  env_state: Any                # leaves [num_envs, ...]
  z: jax.Array                  # [num_envs, latent] each env's z for its current episode
  rng: jax.Array
  shared: agents.Shared         # unbatched; unused in mode 'tied'


STATE_AXES = PEARLState(agent=0, encoder=0, encoder_opt=0, obs_stats=0, replay=0, env_state=0,
                        z=0, rng=0, shared=None)


def _with_z(obs_n, z) -> jax.Array:
  """[..., obs + latent]: z broadcast along the leading axes of obs_n."""
  return jnp.concatenate([obs_n, jnp.broadcast_to(z, (*obs_n.shape[:-1], z.shape[-1]))], -1)


def _norm(config: PEARLConfig, stats, obs):
  return normalizer.normalize(stats, obs) if config.normalize_obs else obs


def context_of(config: PEARLConfig, stats, obs, action, reward, next_obs) -> jax.Array:
  return encoder.context_input(_norm(config, stats, obs), action, reward,
                               _norm(config, stats, next_obs) if config.use_next_obs else None)


class PEARLTrainer(loop.HostLoop):
  """Meta-trains PEARL on K tasks; the host loop (chunks, checkpoints, resume) is HostLoop's."""

  finite_metrics = ('critic_loss', 'actor_loss', 'encoder_loss')
  state_axes = STATE_AXES
  init_axes = (0, 0, 0, None, None)

  def _init_args(self, rng, tasks, init_params):
    """Adds one key for the tied networks, the same for every task (they start equal)."""
    return (*loop.place(rng, tasks, init_params), jax.random.fold_in(rng, 1))

  def _init_one(self, rng, task, adapters, backbone, tied_key) -> PEARLState:
    c, s, e = self.config, self.config.sac, self.config.sac.num_envs
    k_agent, k_encoder = jax.random.split(tied_key)
    k_env, k_z, k_loop = jax.random.split(rng, 3)
    agent = agents.init(k_agent, {'backbone': backbone, 'adapters': adapters},
                        self.obs_size + c.latent_size, self.action_size, s)
    context_size = self.obs_size * (1 + c.use_next_obs) + self.action_size + 1
    params = encoder.init(k_encoder, context_size, c.encoder_widths, c.latent_size)
    example = agents.Transition(
        obs=jnp.zeros(self.obs_size), action=jnp.zeros(self.action_size),
        reward=jnp.zeros(()), next_obs=jnp.zeros(self.obs_size), terminal=jnp.zeros(()))
    return PEARLState(
        agent=agent, encoder=params, encoder_opt=optax.adam(c.encoder_lr).init(params),
        obs_stats=normalizer.init(self.obs_size),
        replay=replay_lib.init(example, -(-s.buffer_size // e) * e),
        env_state=jax.vmap(self.env.reset)(jax.random.split(k_env, e), tile(task, e)),
        z=jax.random.normal(k_z, (e, c.latent_size)), rng=k_loop,
        shared=agents.init_shared(backbone, s))

  def _posterior(self, params, stats, batch: agents.Transition):
    mu, var = encoder.factors(params, context_of(self.config, stats, batch.obs, batch.action,
                                                 batch.reward, batch.next_obs))
    return encoder.posterior(mu, var)

  def _encoder_steps(self, ls: PEARLState, batches, contexts, rng):
    """One encoder step per SAC batch; returns (encoder, opt, z [G, latent], metrics)."""
    c, s, stats = self.config, self.config.sac, ls.obs_stats

    def one(carry, inputs):
      params, opt = carry
      batch, context, key = inputs
      k_z, k_next = jax.random.split(key)
      obs_n, next_obs_n = _norm(c, stats, batch.obs), _norm(c, stats, batch.next_obs)

      def loss(params):
        mean, var = self._posterior(params, stats, context)
        z = encoder.sample(k_z, mean, var)
        q_next = agents.sac_next_value(ls.agent, _with_z(next_obs_n, jax.lax.stop_gradient(z)),
                                       k_next, ls.shared.backbone, s)
        q_loss = agents.critic_loss(ls.agent.critic, _with_z(obs_n, z), batch.action,
                                    agents.td_target(batch, q_next, s))
        kl = encoder.kl_to_prior(mean, var)
        return q_loss + c.kl_weight * kl, (jax.lax.stop_gradient(z), kl)

      (value, (z, kl)), grads = jax.value_and_grad(loss, has_aux=True)(params)
      updates, opt = optax.adam(c.encoder_lr).update(jax.lax.pmean(grads, TASK_AXIS), opt,
                                                     params)
      return (optax.apply_updates(params, updates), opt), (z, value, kl)

    g = jax.tree.leaves(batches)[0].shape[0]
    (params, opt), (z, losses, kl) = jax.lax.scan(
        one, (ls.encoder, ls.encoder_opt), (batches, contexts, jax.random.split(rng, g)))
    return params, opt, z, {'encoder_loss': jnp.mean(losses), 'kl': jnp.mean(kl)}

  def _iteration(self, ls: PEARLState, it):
    c, s = self.config, self.config.sac
    e, g = s.num_envs, s.grad_updates_per_step
    rng, k_act, k_rand, k_reset, k_ctx, k_z, k_batch, k_learn = jax.random.split(ls.rng, 8)
    obs = ls.env_state.obs
    action = agents.explore_action(k_act, ls.agent, _with_z(_norm(c, ls.obs_stats, obs), ls.z),
                                   ls.shared.backbone, s)
    warm = it * e < s.warmup_steps
    action = jnp.where(warm, jax.random.uniform(k_rand, action.shape, minval=-1, maxval=1),
                       action)
    nstate = jax.vmap(self.env.step)(ls.env_state, action)
    replay = replay_lib.insert(ls.replay, agents.Transition(
        obs=obs, action=action, reward=nstate.reward, next_obs=nstate.obs,
        terminal=nstate.done * (1.0 - nstate.info['truncation'])))
    stats = ls.obs_stats
    if c.normalize_obs:    # one normaliser: every task's copy sees all tasks' obs
      stats = normalizer.update(stats, jax.lax.all_gather(obs, TASK_AXIS).reshape(
          -1, self.obs_size))
    any_done = jax.lax.psum(jnp.any(nstate.done > 0).astype(jnp.int32), TASK_AXIS) > 0
    env_state = reset_done(self.env, nstate, k_reset, any_done)
    mean, var = self._posterior(ls.encoder, stats, replay_lib.sample(replay, k_ctx,
                                                                    c.context_size))
    k_prior, k_post = jax.random.split(k_z)
    fresh = jnp.where((jnp.arange(e) < e // 2)[:, None],
                      jax.random.normal(k_prior, ls.z.shape),
                      mean + jnp.sqrt(var) * jax.random.normal(k_post, ls.z.shape))
    z = jnp.where(nstate.done[:, None] > 0, fresh, ls.z)

    k_b, k_c = jax.random.split(k_batch)
    batches = agents.sample_batches(replay, k_b, s)
    contexts = jax.tree.map(lambda x: x.reshape(g, c.context_size, *x.shape[1:]),
                            replay_lib.sample(replay, k_c, g * c.context_size))
    ls = ls.replace(obs_stats=stats)

    def learn(ls):
      k_enc, k_sac = jax.random.split(k_learn)
      params, opt, zs, enc_metrics = self._encoder_steps(ls, batches, contexts, k_enc)
      norm = lambda x: _norm(c, stats, x)    # noqa: E731
      conditioned = batches._replace(obs=_with_z(norm(batches.obs), zs[:, None]),
                                     next_obs=_with_z(norm(batches.next_obs), zs[:, None]))
      agent, shared, metrics = agents.updates(ls.agent, ls.shared, conditioned, k_sac, s, it * g)
      return ls.replace(agent=agent, shared=shared, encoder=params, encoder_opt=opt), {
          **metrics, **enc_metrics}

    def skip(ls):
      zero = jnp.zeros(())
      return ls, {'critic_loss': zero, 'actor_loss': zero, 'alpha': zero,
                  'encoder_loss': zero, 'kl': zero}

    ls, metrics = jax.lax.cond(warm, skip, learn, ls)
    metrics['train_reward'] = jnp.mean(nstate.reward)
    return ls.replace(replay=replay, env_state=env_state, z=z, rng=rng), metrics

  def _chunk_one(self, ls: PEARLState, chunk_index):
    n = self.config.sac.iterations_per_chunk
    ls, metrics = jax.lax.scan(lambda ls, i: self._iteration(ls, chunk_index * n + i), ls,
                               jnp.arange(n))
    return ls, jax.tree.map(jnp.mean, metrics)

  def _evaluate_one(self, ls: PEARLState):
    """Deterministic return with z = the posterior mean of a context from the task's buffer."""
    c = self.config
    mean, _ = self._posterior(ls.encoder, ls.obs_stats, replay_lib.sample(
        ls.replay, jax.random.fold_in(ls.rng, 2), c.context_size))
    trained = {'actor': ls.agent.actor, 'obs_stats': ls.obs_stats}
    task = jax.tree.map(lambda x: x[0], ls.env_state.info['task'])
    return evaluation.episode_return(self.env, _act(trained, c, mean, None), jax.random.fold_in(
        ls.rng, 1), task, c.eval_episodes)


def _act(trained: dict, config: PEARLConfig, z, mode):
  """The policy at [obs_n, z]: deterministic (`mode` None) or sampling `(u, log_prob)`."""
  def act(obs, key):
    out = policy.apply(trained['actor']['backbone'], trained['actor']['adapters'],
                       _with_z(_norm(config, trained['obs_stats'], obs), z),
                       config.sac.policy)
    if mode is None:
      return out.action
    u = policy.sample_pre_tanh(key, out)
    return u, policy.log_prob_pre_tanh(out, u)
  return act


def adaptation(env, config: PEARLConfig) -> stage.Adaptation:
  """PEARL's rule (stage.Adaptation): the carry is the posterior's sums (prior at first); an
  update plays one episode with z sampled from the posterior and folds it in; the evaluation
  is deterministic with z = the posterior mean. `trained = {'actor', 'encoder', 'obs_stats'}`."""
  def update(trained, sums, key, task):
    k_z, k_episode = jax.random.split(key)
    z = encoder.sample(k_z, *encoder.from_sums(sums))
    ep = pg.episodes(env, _act(trained, config, z, 'sample'), k_episode, task, 1)
    mu, v = encoder.factors(trained['encoder'], context_of(
        config, trained['obs_stats'], ep.obs, jnp.tanh(ep.u), ep.reward, ep.next_obs))
    flat = lambda x: x.reshape(-1, x.shape[-1])   # noqa: E731  ([L, 1, .] -> [L, .])
    return encoder.add(sums, flat(mu), flat(v), ep.alive.reshape(-1))

  def evaluate(trained, sums, key, task):
    return evaluation.episode_return(env, _act(trained, config, encoder.from_sums(sums)[0], None),
                                     key, task, config.eval_episodes)

  return stage.Adaptation(lambda trained, key, task: encoder.empty(config.latent_size), update,
                          evaluate)


# -- the pipeline stages ---------------------------------------------------------------------------
META_STAGE = 'meta_pearl'


def stage_config(config, episode_length: int = 0) -> PEARLConfig:
  """SAC from config.rl (mode 'tied') with `meta.total_steps * baselines.meta_factor` env steps
  per task, plus config.baselines.pearl. (`episode_length`: unused.)"""
  del episode_length
  budget = config.meta.total_steps * config.baselines.meta_factor
  policy_config = dataclasses.replace(run_config.policy_config(config), core_size=0)
  sac = run_config.off_policy_config(config, 'sac', 'tied', budget, config.meta.eval_every,
                                     policy=policy_config, normalize_obs=False)
  p = dict(config.baselines.pearl)
  return PEARLConfig(sac=sac, normalize_obs=config.rl.normalize_obs, **p)


def adapt(exp, splits) -> list:
  """Stages adapt_pearl_<split> of `splits` (meta-training first if needed), one call:
  context grows episode by episode through the budget; their results in `splits`' order."""
  c, family = exp.config, exp.family
  learner = stage_config(c)
  params = stage.tied_params(exp.key(f'{META_STAGE}/init'), family, learner.sac.policy,
                             c.meta.num_tasks, obs_size=family.obs_size + learner.latent_size)
  trained = stage.meta_stage(
      exp, META_STAGE, learner, params, family,
      lambda s: jax.tree.map(lambda x: x[0], {'actor': s.agent.actor, 'encoder': s.encoder,
                                               'obs_stats': s.obs_stats}),
      make=PEARLTrainer)
  trained['obs_stats'] = normalizer.from_tree(trained['obs_stats'])
  return stage.update_stage(exp, 'pearl', splits, adaptation(family.env, learner), trained,
                            family.episode_length)

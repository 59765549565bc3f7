"""MAML (Finn et al. 2017) with ProMP's outer objective (Rothfuss et al. 2019), K tasks at once.

    --config.methods=apb,scratch,maml --config.baselines.maml.inner_lr=0.1

The policy is ours (input layer -> MLP `policy.widths` -> output layer, every
leaf meta-trained; MAML has no frozen part). Meta-parameters theta are one
copy for all tasks (`MAMLState.meta`, unbatched); per task, one iteration:
  1. pre-update: `num_envs` fresh episodes with pi_theta (pg.py);
  2. inner step: theta'_i = theta - inner_lr * grad L_in(theta), the LVC
     surrogate L_in = -mean(pi_theta / stop_grad(pi_theta) * A), A the
     return minus a linear baseline fitted on the batch (pg.advantages);
  3. post-update: `num_envs` fresh episodes with pi_theta'_i;
  4. `outer_steps` Adam steps on ProMP's objective, the PPO-clip surrogate of
     the post-update episodes with theta'_i = theta'(theta) recomputed through
     the inner step (`jax.grad` of it, inside the task `vmap`), plus
     `inner_kl_coef` x KL(pi_theta_old || pi_theta) on the pre-update episodes;
     the gradient is the mean over tasks (`pmean` on the named task axis).
One observation normaliser for all tasks, from the pre-update episodes, frozen
at adaptation. An iteration takes 2 x num_envs x episode_length env steps
per task (both rollouts are counted); a chunk is as many whole iterations as
fit in `eval_every`, so the stage's budget is rounded down to whole iterations
(`stage_config`) and the curves' env steps are the steps actually taken.

Adaptation (the method's own rule): from theta, an inner step on fresh
episodes every `num_envs x episode_length` env steps, through the whole
budget; the curve value at env step s is the deterministic return after
s // (num_envs x episode_length) inner steps.

Reference settings: ProMP's `run_scripts/pro-mp_run_mujoco.py` (20 episodes per
task and step, inner_lr 0.1, lr 1e-3, 5 ProMP steps, clip 0.3, inner KL 5e-4,
gamma 0.99, lambda 1, linear feature baseline, 1 inner step).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from apb_jax import evaluation, policy, run_config
from apb_jax.baselines import pg, stage
from apb_jax.learners import loop, normalizer
from apb_jax.learners.config import _Schedule
from apb_jax.learners.shared import TASK_AXIS
from apb_jax.policy import PolicyConfig


@dataclasses.dataclass(frozen=True)
class MAMLConfig(_Schedule):
  algo: str = 'maml'
  mode: str = 'tied'                # one meta-policy for all tasks (the progress label)
  policy: PolicyConfig = PolicyConfig()
  episode_length: int = 200         # the family's; sets steps_per_iteration
  total_steps: int = 102_400        # env steps per task: whole iterations (see stage_config)
  eval_every: int = 16_000
  eval_episodes: int = 4
  num_envs: int = 20                # episodes per task per rollout (ProMP: 20)
  inner_lr: float = 0.1
  lr: float = 1e-3                  # outer Adam
  outer_steps: int = 5              # ProMP steps per iteration, without re-sampling
  clip_eps: float = 0.3
  inner_kl_coef: float = 5e-4
  gamma: float = 0.99
  normalize_obs: bool = True

  def __post_init__(self):
    for field in ('num_envs', 'outer_steps', 'episode_length', 'eval_episodes'):
      if getattr(self, field) < 1:
        raise ValueError(f'baselines.maml.{field}={getattr(self, field)} must be >= 1.')
    for field in ('inner_lr', 'lr', 'clip_eps'):
      if getattr(self, field) <= 0:
        raise ValueError(f'baselines.maml.{field}={getattr(self, field)} must be > 0.')
    if self.eval_every % self.steps_per_iteration or self.total_steps % self.eval_every or (
        self.eval_every <= 0):
      raise ValueError(
          f'MAML budgets must be whole iterations of {self.steps_per_iteration} env steps '
          f'(2 x num_envs x episode_length), got eval_every={self.eval_every}, total_steps='
          f'{self.total_steps}; build the config with maml.stage_config.')

  @property
  def steps_per_iteration(self) -> int:
    return 2 * self.num_envs * self.episode_length

  @property
  def inner_batch_steps(self) -> int:
    return self.num_envs * self.episode_length


# -- the pure pieces, shared by meta-training and adaptation -------------------------------------
def _obs(stats, obs, config):
  return normalizer.normalize(stats, obs) if config.normalize_obs else obs


def _out(params, stats, obs, config):
  return policy.apply(params['backbone'], params['adapters'], _obs(stats, obs, config),
                      config.policy)


def log_prob(params, stats, batch: pg.Episodes, config) -> jax.Array:
  return policy.log_prob_pre_tanh(_out(params, stats, batch.obs, config), batch.u)


def sample_act(params, stats, config):
  def act(obs, key):
    out = _out(params, stats, obs, config)
    u = policy.sample_pre_tanh(key, out)
    return u, policy.log_prob_pre_tanh(out, u)
  return act


def deterministic_act(params, stats, config):
  return lambda obs, key: _out(params, stats, obs, config).action


def inner_step(params, stats, batch: pg.Episodes, adv, config):
  """theta - inner_lr * grad of the LVC surrogate on `batch` (differentiable in `params`)."""
  def loss(p):
    lp = log_prob(p, stats, batch, config)
    return -pg.masked_mean(jnp.exp(lp - jax.lax.stop_gradient(lp)) * adv, batch.alive)
  grads = jax.grad(loss)(params)
  return jax.tree.map(lambda p, g: p - config.inner_lr * g, params, grads)


@struct.dataclass
class MAMLState:
  task: Any               # this task's params
  adapted: Any            # theta'_i of the latest iteration (what `evaluate` scores)
  rng: jax.Array
  meta: Any               # unbatched: theta = {'backbone', 'adapters'}
  meta_opt: Any           # unbatched: Adam state
  obs_stats: normalizer.Normalizer   # unbatched


STATE_AXES = MAMLState(task=0, adapted=0, rng=0, meta=None, meta_opt=None, obs_stats=None)


class MAMLTrainer(loop.HostLoop):
  """Meta-trains theta on K tasks; the host loop (chunks, checkpoints, resume) is HostLoop's."""

  finite_metrics = ('outer_loss', 'pre_return', 'post_return')
  state_axes = STATE_AXES

  init_axes = (0, 0, None)

  def _init_args(self, rng, tasks, init_params):
    """theta = the backbone and task 0's adapters: one meta-policy for all tasks."""
    rngs, tasks, adapters, backbone = loop.place(rng, tasks, init_params)
    return rngs, tasks, {'backbone': backbone,
                         'adapters': jax.tree.map(lambda x: x[0], adapters)}

  def _init_one(self, rng, task, meta) -> MAMLState:
    return MAMLState(task=task, adapted=meta, rng=rng, meta=meta,
                     meta_opt=optax.adam(self.config.lr).init(meta),
                     obs_stats=normalizer.init(self.obs_size))

  def _iteration(self, ls: MAMLState, _):
    c, env = self.config, self.env
    rng, k_pre, k_post = jax.random.split(ls.rng, 3)
    stats, theta = ls.obs_stats, ls.meta
    pre = pg.episodes(env, sample_act(theta, stats, c), k_pre, ls.task, c.num_envs)
    adv_pre = pg.advantages(pre, c.gamma)
    adapted = inner_step(theta, stats, pre, adv_pre, c)
    post = pg.episodes(env, sample_act(adapted, stats, c), k_post, ls.task, c.num_envs)
    adv_post = pg.advantages(post, c.gamma)

    def outer_loss(theta):
      lp = log_prob(inner_step(theta, stats, pre, adv_pre, c), stats, post, c)
      ratio = jnp.exp(lp - post.log_prob)
      surrogate = -pg.masked_mean(jnp.minimum(
          ratio * adv_post, jnp.clip(ratio, 1 - c.clip_eps, 1 + c.clip_eps) * adv_post),
          post.alive)
      kl = pg.masked_mean(pre.log_prob - log_prob(theta, stats, pre, c), pre.alive)
      return surrogate + c.inner_kl_coef * kl

    tx = optax.adam(c.lr)

    def outer_step(carry, _):
      theta, opt = carry
      loss, grads = jax.value_and_grad(outer_loss)(theta)
      updates, opt = tx.update(jax.lax.pmean(grads, TASK_AXIS), opt, theta)
      return (optax.apply_updates(theta, updates), opt), loss

    (theta, opt), losses = jax.lax.scan(outer_step, (theta, ls.meta_opt), None,
                                        length=c.outer_steps)
    if c.normalize_obs:   # every task's pre-update observations, one normaliser
      obs = jax.lax.all_gather(pre.obs.reshape(-1, self.obs_size), TASK_AXIS)
      stats = normalizer.update(stats, obs.reshape(-1, self.obs_size))
    episode_return = lambda b: jnp.mean(jnp.sum(b.reward * b.alive, axis=0))   # noqa: E731
    metrics = {'outer_loss': losses[0], 'pre_return': episode_return(pre),
               'post_return': episode_return(post)}
    return ls.replace(adapted=adapted, rng=rng, meta=theta, meta_opt=opt,
                      obs_stats=stats), metrics

  def _chunk_one(self, ls: MAMLState, chunk_index):
    del chunk_index
    ls, metrics = jax.lax.scan(self._iteration, ls, None,
                               length=self.config.iterations_per_chunk)
    return ls, jax.tree.map(jnp.mean, metrics)

  def _evaluate_one(self, ls: MAMLState):
    """Deterministic return of the latest post-update policy theta'_i."""
    rng = jax.random.fold_in(ls.rng, 1)
    return evaluation.episode_return(
        self.env, deterministic_act(ls.adapted, ls.obs_stats, self.config), rng, ls.task,
        self.config.eval_episodes)


def adaptation(env, config: MAMLConfig) -> stage.Adaptation:
  """MAML's rule (stage.Adaptation): the carry is the policy's params (theta at first); an
  update is an inner step on `num_envs` fresh episodes; the evaluation is deterministic.
  `trained = {'meta': theta, 'obs_stats': Normalizer}` (frozen at adaptation)."""
  def update(trained, params, key, task):
    stats = trained['obs_stats']
    batch = pg.episodes(env, sample_act(params, stats, config), key, task, config.num_envs)
    return inner_step(params, stats, batch, pg.advantages(batch, config.gamma), config)

  def evaluate(trained, params, key, task):
    return evaluation.episode_return(env, deterministic_act(params, trained['obs_stats'], config),
                                     key, task, config.eval_episodes)

  return stage.Adaptation(lambda trained, key, task: trained['meta'], update, evaluate)


# -- the pipeline stages ---------------------------------------------------------------------------
META_STAGE = 'meta_maml'


def stage_config(config, episode_length: int) -> MAMLConfig:
  """Meta-training config: `meta.total_steps * baselines.meta_factor` env steps per task and
  `meta.eval_every`, each rounded down to whole iterations; one-line errors."""
  m = config.baselines.maml
  per = 2 * int(m.num_envs) * episode_length
  if int(m.num_envs) < 1 or config.meta.eval_every < per:
    raise ValueError(
        f'MAML takes 2 x num_envs x episode_length = {per} env steps per iteration, more than '
        f'--config.meta.eval_every={config.meta.eval_every}; lower '
        f'--config.baselines.maml.num_envs={m.num_envs} (>= 1) or raise meta.eval_every.')
  every = config.meta.eval_every // per * per
  budget = config.meta.total_steps * config.baselines.meta_factor
  policy_config = dataclasses.replace(run_config.policy_config(config), core_size=0)
  return MAMLConfig(policy=policy_config, episode_length=episode_length,
                    total_steps=budget // config.meta.eval_every * every, eval_every=every,
                    eval_episodes=config.rl.eval_episodes, **{
                        k: v for k, v in m.items()})


def adapt(exp, splits) -> list:
  """Stages adapt_maml_<split> of `splits` (meta-training first if needed), one call: inner
  steps through the budget; their results in `splits`' order."""
  c, family = exp.config, exp.family
  learner = stage_config(c, family.episode_length)
  params = stage.tied_params(exp.key(f'{META_STAGE}/init'), family, learner.policy,
                             c.meta.num_tasks)
  trained = stage.meta_stage(exp, META_STAGE, learner, params, family,
                             lambda s: {'meta': s.meta, 'obs_stats': s.obs_stats},
                             make=MAMLTrainer)
  trained['obs_stats'] = normalizer.from_tree(trained['obs_stats'])
  return stage.update_stage(exp, 'maml', splits, adaptation(family.env, learner), trained,
                            learner.inner_batch_steps)

"""RL^2 (Duan et al. 2016; Wang et al. 2016): PPO with a GRU on trials of one task.

    --config.methods=apb,scratch,rl2 --config.baselines.rl2.trial_episodes=2

The policy is ours with a core: input layer -> MLP (`policy.widths`) -> GRU
(`baselines.rl2.core_size`) -> output layer, every leaf trained, no part frozen
(RL^2 has no backbone/adapter split; the names are only where the leaves sit).
Its input is `TrialEnv`'s [obs, previous action, previous reward, ended flag].

Meta-training: PPO (`config.ppo`'s settings) in mode 'tied', ONE policy for all
`train` tasks (learners/shared.py), on `TrialEnv(family.env, trial_episodes)`:
the GRU carry is kept through the episodes of a trial and zeroed between
trials, and advantages flow across a trial's episode boundaries (a trial is
one episode of the meta-MDP), so exploring in episode 1 is credited with what
it earns in episode 2. The carry is carried between rollouts; gradients are
truncated at the rollout (`ppo.unroll_length` steps). Budget: `meta.total_steps
* baselines.meta_factor` env steps per train task. Per-task value networks
(with the carry as input) only serve the advantages.

Adaptation (no gradient): on each test run, `eval_episodes` fresh trials with
the deterministic action; curve value at env step s = mean return of episode
min(s // episode_length, trial_episodes - 1) of the trials (baselines/__init__).

Reference settings: VariBAD's `config/mujoco/args_cheetah_vel_rl2.py` (GRU 128,
PPO, gamma 0.97) and ProMP's `rl2_config.json` (GRU, trials of 2 episodes).
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from apb_jax import adapt as adapt_lib
from apb_jax import checkpoint, files, policy, run_config
from apb_jax.baselines.trial_env import TrialEnv, trial_returns
from apb_jax.learners import networks, normalizer
from apb_jax.learners.config import PPOConfig
from apb_jax.tasks.base import TaskFamily

META_STAGE = 'meta_rl2'


def trial_family(family: TaskFamily, episodes: int) -> TaskFamily:
  """`family` with its env seen as trials of `episodes` episodes (same tasks and splits)."""
  return dataclasses.replace(family, name=f'{family.name}/rl2',
                             env=TrialEnv(family.env, episodes))


def stage_config(config) -> PPOConfig:
  """The meta-training PPO config; raises a one-line error for a bad rl2 setting."""
  r = config.baselines.rl2
  if int(r.core_size) < 1:
    raise ValueError(f'--config.baselines.rl2.core_size={r.core_size} must be >= 1: RL^2 '
                     'adapts through its recurrent state.')
  if int(r.trial_episodes) < 1:
    raise ValueError(f'--config.baselines.rl2.trial_episodes={r.trial_episodes} must be >= 1.')
  core = dataclasses.replace(run_config.policy_config(config), core_size=int(r.core_size))
  return run_config.ppo_config(
      config, 'tied', config.meta.total_steps * config.baselines.meta_factor,
      config.meta.eval_every, policy=core, core_reset_episodes=1)


def init_params(rng, family: TaskFamily, config: PPOConfig, k: int):
  """One fresh policy, its adapters repeated for the K tasks (mode 'tied' keeps them equal)."""
  params = policy.init_params(rng, family.obs_size, family.action_size, config.policy)
  params['adapters'] = jax.tree.map(lambda x: jnp.repeat(x[None], k, axis=0),
                                    params['adapters'])
  return params


def meta_policy(exp) -> dict:
  """The meta-trained policy `{'actor', 'obs_stats'}`, meta-training it first if needed."""
  c = exp.config
  path = exp.path('checkpoints', 'rl2_policy')
  if not os.path.exists(exp.path('results', f'{META_STAGE}.json')):
    family = trial_family(exp.family, c.baselines.rl2.trial_episodes)
    learner = stage_config(c)
    params = init_params(exp.key('meta/rl2/init'), family, learner, c.meta.num_tasks)
    out, state, ckpt = exp.learner_stage(META_STAGE, learner, exp.key('meta/rl2'),
                                         exp.tasks['train'], params, family=family,
                                         method='rl2', split='train')
    first = lambda tree: jax.tree.map(lambda x: x[0], tree)   # noqa: E731  (copies are equal)
    checkpoint.save_params(path, {'actor': first(state.agent.actor),
                                  'obs_stats': first(state.agent.obs_stats)})
    exp.finish(META_STAGE, out, ckpt)
  return checkpoint.restore_params(path)


def episode_returns(trained: dict, family: TaskFamily, config: PPOConfig, rng, tasks,
                    n_trials: int) -> jax.Array:
  """[runs, trial_episodes] mean return of each episode of `n_trials` trials per task.

  `family` is a `trial_family`; `tasks` leaves `[runs, ...]`; deterministic actions.
  """
  stats = normalizer.Normalizer(**trained['obs_stats']) if isinstance(
      trained['obs_stats'], dict) else trained['obs_stats']

  def act(obs, key, carry):
    del key
    obs = normalizer.normalize(stats, obs) if config.normalize_obs else obs
    out, carry = networks.actor_step(trained['actor'], obs, carry, None, config)
    return out.action, carry

  def one(rng, task):
    return trial_returns(family.env, act, rng, task, n_trials,
                         policy.initial_carry((n_trials,), config.policy))

  runs = jax.tree.leaves(tasks)[0].shape[0]
  return jax.vmap(one)(jax.random.split(rng, runs), tasks)


def curves_from_episodes(per_episode: np.ndarray, steps: np.ndarray, episode_length: int):
  """[runs, n_evals]: at env step s, episode min(s // episode_length, last) of a trial."""
  index = np.minimum(np.asarray(steps) // episode_length, per_episode.shape[1] - 1)
  return per_episode[:, index]


def adapt(exp, split: str) -> dict:
  """The `adapt_rl2_<split>` stage: the meta-trained RL^2 policy run in trials on `split`."""
  c = exp.config
  name = f'adapt_rl2_{split}'
  result_path = exp.path('results', f'{name}.json')
  if os.path.exists(result_path):
    return files.read_json(result_path)
  trained = meta_policy(exp)
  family = trial_family(exp.family, c.baselines.rl2.trial_episodes)
  learner = stage_config(c)
  tasks = adapt_lib.repeat_tasks(exp.tasks[split], c.adapt.seeds)
  fn = jax.jit(lambda rng, tasks: episode_returns(trained, family, learner, rng, tasks,
                                                  c.rl.eval_episodes))
  start = time.perf_counter()
  rng = exp.key(f'adapt/{split}')
  fn = fn.lower(rng, tasks).compile()
  compile_s = time.perf_counter() - start
  per_episode = np.asarray(fn(rng, tasks))
  steps = np.arange(c.adapt.total_steps // c.adapt.eval_every + 1) * c.adapt.eval_every
  runs = per_episode.shape[0]
  out = {'steps': steps.tolist(),
         'curves': curves_from_episodes(per_episode, steps, exp.family.episode_length).tolist(),
         'episode_returns': per_episode.tolist(),
         'run_s': time.perf_counter() - start, 'compile_s': compile_s,
         'env_steps': runs * min(c.adapt.total_steps, family.episode_length)}
  exp.finish(name, out)
  return out

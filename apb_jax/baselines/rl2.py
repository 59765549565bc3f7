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
min(s // episode_length, trial_episodes - 1) of the trials (`adaptation`: the
trials are played at the rule's init, one update per episode after).

Reference settings: VariBAD's `config/mujoco/args_cheetah_vel_rl2.py` (GRU 128,
PPO, gamma 0.97) and ProMP's `rl2_config.json` (GRU, trials of 2 episodes).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from apb_jax import policy, run_config
from apb_jax.baselines import stage
from apb_jax.baselines.trial_env import TrialEnv, trial_returns
from apb_jax.learners import networks, normalizer
from apb_jax.learners.config import PPOConfig
from apb_jax.tasks.base import TaskFamily

META_STAGE = 'meta_rl2'


def trial_family(family: TaskFamily, episodes: int) -> TaskFamily:
  """`family` with its env seen as trials of `episodes` episodes (same tasks and splits)."""
  return dataclasses.replace(family, name=f'{family.name}/rl2',
                             env=TrialEnv(family.env, episodes))


def stage_config(config, episode_length: int = 0) -> PPOConfig:
  """The meta-training PPO config; raises a one-line error for a bad rl2 setting.
  (`episode_length`: unused, the signature every baseline's stage_config has.)"""
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


def _first(state) -> dict:
  """The trained policy of a finished meta-training state (task 0's copy: all are equal)."""
  first = lambda tree: jax.tree.map(lambda x: x[0], tree)   # noqa: E731
  return {'actor': first(state.agent.actor), 'obs_stats': first(state.agent.obs_stats)}


def run_trials(trained: dict, family: TaskFamily, config: PPOConfig, rng, task,
               n_trials: int) -> jax.Array:
  """[trial_episodes] mean return of each episode of `n_trials` fresh trials of one task.

  `family` is a `trial_family`; deterministic actions; no gradient (RL^2's adaptation).
  """
  stats = normalizer.from_tree(trained['obs_stats'])

  def act(obs, key, carry):
    del key
    obs = normalizer.normalize(stats, obs) if config.normalize_obs else obs
    out, carry = networks.actor_step(trained['actor'], obs, carry, None, config)
    return out.action, carry

  return trial_returns(family.env, act, rng, task, n_trials,
                       policy.initial_carry((n_trials,), config.policy))


def episode_returns(trained: dict, family: TaskFamily, config: PPOConfig, rng, tasks,
                    n_trials: int) -> jax.Array:
  """[runs, trial_episodes]: `run_trials` on each run (`tasks` leaves [runs, ...]), vmapped."""
  return stage.over_runs(lambda r, t: run_trials(trained, family, config, r, t, n_trials), rng,
                         tasks)


def adaptation(family: TaskFamily, config: PPOConfig, n_trials: int) -> stage.Adaptation:
  """RL^2's rule (stage.Adaptation) on a `trial_family`: `init` plays `n_trials` fresh trials
  of the run's task with its own key (`run_trials`) and keeps each episode's mean return; an
  update is one episode of experience; the value after u updates is episode min(u, last)'s
  return (the last episode the experience allows so far fits before, the trial's own once
  it all fits). `trained = {'actor', 'obs_stats'}`."""
  last = family.env.episodes - 1

  def init(trained, key, task):
    return {'returns': run_trials(trained, family, config, key, task, n_trials),
            'episode': jnp.int32(0)}

  def update(trained, carry, key, task):
    del trained, key, task
    return dict(carry, episode=carry['episode'] + 1)

  def evaluate(trained, carry, key, task):
    del trained, key, task
    return carry['returns'][jnp.minimum(carry['episode'], last)]

  return stage.Adaptation(init, update, evaluate)


def adapt(exp, splits) -> list:
  """Stages adapt_rl2_<split> of `splits` (meta-training first if needed), one call on the
  shared host loop: trials on the splits' runs; their results in `splits`' order."""
  c = exp.config
  family = trial_family(exp.family, c.baselines.rl2.trial_episodes)
  learner = stage_config(c)
  params = stage.tied_params(exp.key(f'{META_STAGE}/init'), family, learner.policy,
                             c.meta.num_tasks)
  trained = stage.meta_stage(exp, META_STAGE, learner, params, family, _first)
  return stage.update_stage(
      exp, 'rl2', splits, adaptation(family, learner, c.rl.eval_episodes), trained,
      exp.family.episode_length, env_steps_per_run=min(c.adapt.total_steps, family.episode_length))

"""From an experiment's `ml_collections` config to the static config of each stage, and checks.

    validate(config)                     # ValueError naming the fix, one line per bad field
    learner_config(config, 'adapters', total_steps, eval_every)   # LearnerConfig or PPOConfig
    ppo_config(config, 'tied', total_steps, eval_every, policy=...)   # PPO, whatever c.learner

The config's fields, defaults and rules are in `config_fields.py`; profiles in
`experiments/configs/common.py`.
"""

from __future__ import annotations

import dataclasses
import os

from apb_jax import adapt, baselines, config_fields, policy, schema, tasks
from apb_jax.config_fields import SPLITS
from apb_jax.learners import LearnerConfig, PPOConfig
from apb_jax.schema import csv

__all__ = ['SPLITS', 'csv', 'policy_config', 'ppo_config', 'learner_config',
           'off_policy_config', 'validate', 'needs_meta_backbone']


def policy_config(config, mode: str | None = None) -> policy.PolicyConfig:
  """The policy of config.policy; its adapter form (config.policy.adapter) only for a learner
  that trains adapters alone (`mode` 'adapters'): meta-training, the methods that train the
  whole network and the adapter origin use the paper's linear adapters."""
  return policy.PolicyConfig(widths=tuple(config.policy.widths),
                             activation=config.policy.activation,
                             core_size=config.policy.core_size,
                             init_scale=config.policy.init_scale,
                             adapter=config.policy.adapter if mode == 'adapters' else 'linear',
                             lora_rank=config.policy.lora_rank)


def _tuples(group) -> dict:
  return {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in group.items()}


def ppo_config(config, mode: str, total_steps: int, eval_every: int,
               exploration: str = 'action', **changes) -> PPOConfig:
  """PPO from config.ppo and config.policy (eval_episodes from config.rl); `changes` override."""
  ppo = _tuples(config.ppo)
  fields = dict(mode=mode, exploration=exploration, total_steps=total_steps,
                policy=dataclasses.replace(policy_config(config, mode),
                                           loc_gain=ppo.pop('loc_gain')),
                eval_every=eval_every, eval_episodes=config.rl.eval_episodes, **ppo)
  return PPOConfig(**dict(fields, **changes))


def learner_config(config, mode: str, total_steps: int, eval_every: int,
                   exploration: str = 'action', critic_mode: str = 'mlp',
                   adaptation: bool = False):
  """The learner config of one APB stage: config.learner, config.policy and config.rl (SAC,
  TD3; `critic_mode` as LearnerConfig's) or config.ppo (PPO). An `adaptation` stage of SAC/TD3
  takes adaptation's own temperature and actor delay (config.adapt; config_fields.py)."""
  if config.learner == 'ppo':
    return ppo_config(config, mode, total_steps, eval_every, exploration)
  changes = {}
  if adaptation:
    delay = int(config.adapt.actor_delay_fraction * total_steps)
    changes = dict(init_alpha=config.adapt.init_alpha,
                   actor_delay=delay // config.rl.num_envs * config.rl.num_envs)
  return off_policy_config(config, config.learner, mode, total_steps, eval_every, exploration,
                           critic_mode=critic_mode, **changes)


def off_policy_config(config, algo: str, mode: str, total_steps: int, eval_every: int,
                      exploration: str = 'action', **changes) -> LearnerConfig:
  """SAC or TD3 from config.rl and config.policy; `changes` override."""
  fields = dict(algo=algo, mode=mode, exploration=exploration, policy=policy_config(config, mode),
                total_steps=total_steps, eval_every=eval_every,
                buffer_size=min(config.rl.buffer_size, total_steps),
                **{k: v for k, v in _tuples(config.rl).items() if k != 'buffer_size'})
  return LearnerConfig(**dict(fields, **changes))


def validate(config, check_task: bool = True, episode_length: int = tasks.EPISODE_LENGTH) -> None:
  """Raises a ValueError naming the fix for any bad field, before anything is built or written:
  every field against its declared rule (`config_fields.FIELDS`, one line per violation),
  then the rules that tie fields together (first violation). `episode_length`: the
  family's, which sets the baselines' iteration sizes."""
  bad = schema.problems(config, config_fields.FIELDS)
  if bad:
    raise ValueError('\nerror: '.join(bad))
  if check_task and config.task not in tasks.names():
    raise ValueError(f'unknown task family {config.task!r}; choose one of {tasks.names()}.')
  methods = csv(config.methods)
  if config.meta.method == 'bc' and config.policy.core_size and needs_meta_backbone(methods):
    raise ValueError('--config.meta.method=bc distils feed-forward experts; use '
                     '--config.meta.method=rl with --config.policy.core_size > 0.')
  if 'apb_warm' in methods and config.adapt.adapters != 'origin':
    raise ValueError('apb_warm starts from the mean of the meta-trained adapters, which means '
                     'something only when they share one origin; use '
                     '--config.adapt.adapters=origin or leave apb_warm out of --config.methods.')
  if config.backbone_from:
    lent = ['backbone'] + (['critic_backbone'] if config.adapt.critic != 'fresh' else [])
    for name in lent:
      if not os.path.isdir(os.path.join(config.backbone_from, 'checkpoints', name)):
        raise ValueError(f'--config.backbone_from={config.backbone_from!r} holds no '
                         f'checkpoints/{name}/; give the run directory of a finished meta_train'
                         f'{" with the same --config.adapt.critic" if name != "backbone" else ""}.')
  if config.adapt.critic != 'fresh':
    if config.learner == 'ppo':
      raise ValueError(f'--config.adapt.critic={config.adapt.critic} transfers the twin Q critic '
                       "of sac/td3; PPO's value function is always fresh: use "
                       '--config.adapt.critic=fresh with --config.learner=ppo.')
    if config.meta.method == 'bc' and needs_meta_backbone(methods):
      raise ValueError(f'--config.adapt.critic={config.adapt.critic} needs a meta-trained critic, '
                       'which only --config.meta.method=rl trains (bc distils the actor); use '
                       'one of them.')
  try:   # rules inside PolicyConfig (init_scale against min_scale)
    policy_config(config)
  except ValueError as e:
    raise ValueError(f'policy (--config.policy.*): {e}') from None
  # Building every stage's learner config checks budgets (multiples of num_envs, ...) and
  # settings (e.g. PPO refuses param noise) up front.
  learner_group = 'ppo' if config.learner == 'ppo' else 'rl'
  for stage, group, mode, steps, every, exploration, critic in _learner_stages(config):
    try:
      learner_config(config, mode, steps, every, exploration, critic, adaptation=group == 'adapt')
    except ValueError as e:
      raise ValueError(f'{stage} (--config.{group}.*, --config.{learner_group}.*): {e}') from None
  for name in methods:
    if name in baselines.NAMES:
      baselines.get(name).stage_config(config, episode_length)


def needs_meta_backbone(methods) -> bool:
  return any(m in adapt.METHODS and adapt.method(m).backbone == 'meta' for m in methods)


def _learner_stages(config):
  """(stage, config group, mode, total_steps, eval_every, exploration, critic_mode) of every
  kind of learner stage."""
  a, m = config.adapt, config.meta
  yield ('meta-training', 'meta', 'shared' if m.method == 'rl' else 'all', m.total_steps,
         m.eval_every, 'action', adapt.meta_critic_mode(a.critic) if m.method == 'rl' else 'mlp')
  yield ('adaptation', 'adapt', 'adapters', a.total_steps, a.eval_every, config.exploration,
         adapt.critic_setup('apb', a.critic)[0])
  yield ('the oracle (oracle_factor x adapt.total_steps)', 'adapt', 'all',
         a.total_steps * config.oracle_factor, a.eval_every, config.exploration, 'mlp')

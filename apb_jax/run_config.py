"""From an experiment's `ml_collections` config to the static config of each stage, and checks.

    validate(config)                     # one-line ValueError naming the fix, before anything runs
    learner_config(config, 'adapters', total_steps, eval_every)   # LearnerConfig or PPOConfig
    ppo_config(config, 'tied', total_steps, eval_every, policy=...)   # PPO, whatever c.learner

The config's fields and profiles are in `experiments/configs/common.py`.
"""

from __future__ import annotations

import os

from apb_jax import adapt, baselines, meta_train, policy, tasks
from apb_jax.learners import LearnerConfig, PPOConfig
from apb_jax.learners.config import ALGOS, EXPLORATIONS

SPLITS = ('test_id', 'test_ood')


def csv(text: str) -> list[str]:
  return [x.strip() for x in str(text).split(',') if x.strip()]


def policy_config(config) -> policy.PolicyConfig:
  return policy.PolicyConfig(widths=tuple(config.policy.widths),
                             activation=config.policy.activation,
                             core_size=config.policy.core_size)


def _tuples(group) -> dict:
  return {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in group.items()}


def ppo_config(config, mode: str, total_steps: int, eval_every: int,
               exploration: str = 'action', **changes) -> PPOConfig:
  """PPO from config.ppo and config.policy (eval_episodes from config.rl); `changes` override."""
  fields = dict(mode=mode, exploration=exploration, policy=policy_config(config),
                total_steps=total_steps, eval_every=eval_every,
                eval_episodes=config.rl.eval_episodes, **_tuples(config.ppo))
  return PPOConfig(**dict(fields, **changes))


def learner_config(config, mode: str, total_steps: int, eval_every: int,
                   exploration: str = 'action'):
  """The learner config of one APB stage: config.learner, config.policy and config.rl (SAC,
  TD3) or config.ppo (PPO)."""
  if config.learner == 'ppo':
    return ppo_config(config, mode, total_steps, eval_every, exploration)
  return off_policy_config(config, config.learner, mode, total_steps, eval_every, exploration)


def off_policy_config(config, algo: str, mode: str, total_steps: int, eval_every: int,
                      exploration: str = 'action', **changes) -> LearnerConfig:
  """SAC or TD3 from config.rl and config.policy; `changes` override."""
  fields = dict(algo=algo, mode=mode, exploration=exploration, policy=policy_config(config),
                total_steps=total_steps, eval_every=eval_every,
                buffer_size=min(config.rl.buffer_size, total_steps),
                **{k: v for k, v in _tuples(config.rl).items() if k != 'buffer_size'})
  return LearnerConfig(**dict(fields, **changes))


def check_method(name: str) -> None:
  if name not in baselines.NAMES:
    if name not in adapt.METHODS:
      raise ValueError(f'unknown method {name!r}; choose from '
                       f'{[*adapt.METHODS, *baselines.NAMES]} (e.g. --config.methods=apb,rl2).')


def validate(config, check_task: bool = True, episode_length: int = tasks.EPISODE_LENGTH) -> None:
  """Raises a one-line ValueError naming the fix for any bad field (`episode_length`: the
  family's, which sets the baselines' iteration sizes)."""
  if check_task and config.task not in tasks.names():
    raise ValueError(f'unknown task family {config.task!r}; choose one of {tasks.names()}.')
  methods = csv(config.methods)
  for name in methods:
    check_method(name)
  if not methods:
    raise ValueError('--config.methods is empty; e.g. --config.methods=apb,scratch.')
  for split in csv(config.splits):
    if split not in SPLITS:
      raise ValueError(f'unknown split {split!r}; choose from {list(SPLITS)}.')
  if config.learner not in ALGOS:
    raise ValueError(f'unknown --config.learner={config.learner!r}; choose one of {list(ALGOS)}.')
  if config.exploration not in EXPLORATIONS:
    raise ValueError(f'unknown --config.exploration={config.exploration!r}; choose one of '
                     f'{list(EXPLORATIONS)}.')
  if config.meta.method not in meta_train.METHODS:
    raise ValueError(f'unknown --config.meta.method={config.meta.method!r}; choose one of '
                     f'{list(meta_train.METHODS)}.')
  if config.meta.method == 'bc' and config.policy.core_size and needs_meta_backbone(methods):
    raise ValueError('--config.meta.method=bc distils feed-forward experts; use '
                     '--config.meta.method=rl with --config.policy.core_size > 0.')
  for field in ('meta.num_tasks', 'adapt.num_tasks', 'adapt.seeds', 'oracle_factor',
                'baselines.meta_factor'):
    group, name = field.split('.') if '.' in field else (None, field)
    value = config[group][name] if group else config[name]
    if int(value) < 1:
      raise ValueError(f'--config.{field}={value} must be >= 1.')
  if config.backbone_from and not os.path.isdir(os.path.join(config.backbone_from, 'checkpoints',
                                                             'backbone')):
    raise ValueError(f'--config.backbone_from={config.backbone_from!r} holds no '
                     'checkpoints/backbone/; give the run directory of a finished meta_train.')
  # Building every stage's learner config checks budgets (multiples of num_envs, ...) and
  # settings (e.g. PPO refuses param noise) up front.
  for mode, steps, every, exploration in _learner_stages(config):
    learner_config(config, mode, steps, every, exploration)
  for name in methods:
    if name in baselines.NAMES:
      baselines.get(name).stage_config(config, episode_length)


def needs_meta_backbone(methods) -> bool:
  return any(m in adapt.METHODS and adapt.method(m).backbone == 'meta' for m in methods)


def _learner_stages(config):
  """(mode, total_steps, eval_every, exploration) of every kind of learner stage."""
  a, m = config.adapt, config.meta
  yield 'shared' if m.method == 'rl' else 'all', m.total_steps, m.eval_every, 'action'
  yield 'adapters', a.total_steps, a.eval_every, config.exploration
  yield 'all', a.total_steps * config.oracle_factor, a.eval_every, config.exploration

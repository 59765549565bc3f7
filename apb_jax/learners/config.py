"""Static (hashable) learner configurations: `LearnerConfig` (SAC, TD3) and `PPOConfig`.

Off-policy units: an *iteration* steps every one of the `num_envs` parallel
envs of a task once, i.e. `num_envs` env steps per task.
`grad_updates_per_step` is the number of gradient updates per iteration (as
in brax.training's SAC). All step counts (`total_steps`, `eval_every`,
`warmup_steps`) are env steps per task and must be multiples of `num_envs`.

PPO units: an *iteration* is one rollout of `unroll_length` steps in each of
`num_envs` envs (`num_envs * unroll_length` env steps per task), then
`epochs` passes over it in `num_minibatches` minibatches of whole env
sequences (as brax.training's PPO with `batch_size * num_minibatches ==
num_envs`). `total_steps` and `eval_every` are multiples of one rollout.
"""

from __future__ import annotations

import dataclasses

from apb_jax.policy import PolicyConfig

ALGOS = ('sac', 'td3', 'ppo')
OFF_POLICY = ('sac', 'td3')
MODES = ('adapters', 'all', 'shared', 'tied')   # see learners/shared.py
CRITIC_MODES = ('mlp', 'adapters', 'all', 'shared')   # see learners/networks.py
EXPLORATIONS = ('action', 'param')


class _Schedule:
  """Chunks of `eval_every` env steps, each `iterations_per_chunk` iterations of
  `steps_per_iteration` env steps per task."""

  @property
  def iterations_per_chunk(self) -> int:
    return self.eval_every // self.steps_per_iteration

  @property
  def num_chunks(self) -> int:
    return self.total_steps // self.eval_every

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class LearnerConfig(_Schedule):
  algo: str = 'sac'
  # 'adapters': backbone frozen; 'all': every actor leaf trains, per task;
  # 'shared': per-task adapters and one backbone trained by the task-mean gradient;
  # 'tied': one actor, critic and temperature for all tasks, task-mean gradients (PEARL).
  mode: str = 'adapters'
  exploration: str = 'action'       # 'action': SAC sampling / TD3 Gaussian; 'param': param noise
  policy: PolicyConfig = PolicyConfig()
  critic_widths: tuple = (256, 256)
  # 'mlp': a fresh twin MLP, all trained; 'adapters' / 'all' / 'shared': the APB layout
  # (frozen backbone / everything per task / task-mean backbone); see networks.py.
  critic_mode: str = 'mlp'
  # Budget and schedule (env steps per task).
  total_steps: int = 100_000
  num_envs: int = 16
  eval_every: int = 10_000          # one jitted chunk = eval_every env steps
  eval_episodes: int = 4
  warmup_steps: int = 2_048         # uniform random actions, no updates
  # env steps after warm-up in which only the critic trains (actor and temperature wait): a
  # policy that starts competent (apb_warm) is not pulled by a fresh critic's first guesses
  actor_delay: int = 0
  # Optimisation.
  grad_updates_per_step: int = 1
  batch_size: int = 256
  buffer_size: int = 100_000
  gamma: float = 0.99
  tau: float = 0.005
  actor_lr: float = 3e-4
  critic_lr: float = 3e-4
  reward_scale: float = 1.0
  normalize_obs: bool = True
  # SAC.
  alpha_lr: float = 3e-4
  init_alpha: float = 1.0
  # TD3.
  action_noise: float = 0.1
  policy_noise: float = 0.2
  noise_clip: float = 0.5
  policy_delay: int = 2
  # Parameter-space noise (Plappert et al. 2018).
  param_noise_init: float = 0.05    # initial sigma of the Gaussian on trainable leaves
  param_noise_target: float = 0.2   # target RMS distance between perturbed and clean actions
  param_noise_adapt: float = 1.01   # sigma multiplier/divisor per adaptation
  param_noise_interval: int = 10    # iterations between re-perturbing (and adapting)

  def __post_init__(self):
    object.__setattr__(self, 'critic_widths', tuple(self.critic_widths))
    _check_common(self, OFF_POLICY, self.num_envs, 'num_envs')
    if self.critic_mode not in CRITIC_MODES:
      raise ValueError(f'unknown critic_mode {self.critic_mode!r}; choose one of '
                       f'{list(CRITIC_MODES)}.')
    if self.critic_mode != 'mlp' and (self.mode == 'tied' or len(self.critic_widths) < 2):
      raise ValueError(f"critic_mode={self.critic_mode!r} (the APB critic) needs mode != 'tied' "
                       f'and critic_widths of >= 2 widths, got mode={self.mode!r}, '
                       f'critic_widths={self.critic_widths}; e.g. critic_widths=(256, 256).')
    if self.mode == 'tied' and self.exploration == 'param':
      raise ValueError("mode 'tied' (one policy for all tasks) has no per-task parameter "
                       'noise; use exploration=action.')
    if self.policy.core_size:
      raise ValueError(f'policy.core_size={self.policy.core_size}: the recurrent core needs '
                       "the on-policy learner; use algo='ppo' (--config.learner=ppo).")
    for field in ('warmup_steps', 'actor_delay'):
      if getattr(self, field) < 0 or getattr(self, field) % self.num_envs:
        raise ValueError(f'{field}={getattr(self, field)} must be a non-negative multiple of '
                         f'num_envs={self.num_envs}; round it to one.')
    if self.buffer_size < self.num_envs or self.batch_size < 1:
      raise ValueError(f'buffer_size={self.buffer_size} must be >= num_envs and '
                       f'batch_size={self.batch_size} >= 1.')
    if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
      raise ValueError(f'need 0 <= gamma <= 1 and 0 < tau <= 1, got gamma={self.gamma}, '
                       f'tau={self.tau}.')

  @property
  def steps_per_iteration(self) -> int:
    return self.num_envs

  @property
  def first_actor_update(self) -> int:
    """The index of the first update that moves the actor (and SAC's temperature)."""
    return (self.warmup_steps + self.actor_delay) // self.num_envs * self.grad_updates_per_step


def _check_common(c, algos, unit: int, unit_name: str) -> None:
  """Choices, and budgets that are positive multiples of `unit` env steps, one line each."""
  for field, choices in (('algo', algos), ('mode', MODES), ('exploration', EXPLORATIONS)):
    if getattr(c, field) not in choices:
      raise ValueError(f'unknown {field} {getattr(c, field)!r}; choose one of '
                       f'{list(choices)}.')
  if c.num_envs < 1:
    raise ValueError(f'num_envs={c.num_envs} must be >= 1.')
  for field in ('total_steps', 'eval_every'):
    value = getattr(c, field)
    if value < 0 or value % unit:
      raise ValueError(f'{field}={value} must be a non-negative multiple of '
                       f'{unit_name}={unit}; round it to one.')
  if c.eval_every <= 0 or c.total_steps % c.eval_every:
    raise ValueError(f'total_steps={c.total_steps} must be a positive multiple of '
                     f'eval_every={c.eval_every}; change one of them.')
  if not 0.0 <= c.gamma <= 1.0:
    raise ValueError(f'need 0 <= gamma <= 1, got gamma={c.gamma}.')


@dataclasses.dataclass(frozen=True)
class PPOConfig(_Schedule):
  """PPO (Schulman et al. 2017) on the same task axis, modes and host loop as SAC/TD3.

  Defaults follow PureJaxRL/brax.training's continuous-control settings, scaled
  to a few envs per task; `experiments/configs/common.py` holds the ones the
  pipeline uses (`--config.ppo.*`).
  """

  algo: str = 'ppo'
  mode: str = 'adapters'            # as LearnerConfig's, or 'tied': one policy for all tasks
  exploration: str = 'action'       # Gaussian sampling; 'param' is refused (see __post_init__)
  policy: PolicyConfig = PolicyConfig()
  value_widths: tuple = (256, 256)  # the value MLP (input: obs, and the core's carry if any)
  # Budget and schedule (env steps per task).
  total_steps: int = 100_000
  num_envs: int = 16
  unroll_length: int = 64
  eval_every: int = 10_240
  eval_episodes: int = 4
  # Optimisation.
  epochs: int = 4
  num_minibatches: int = 4          # each a subset of the envs, with their whole unroll
  lr: float = 3e-4
  max_grad_norm: float = 0.5        # global-norm clip per network; 0 turns it off
  gamma: float = 0.99
  gae_lambda: float = 0.95
  clip_eps: float = 0.2
  value_coef: float = 0.5           # value loss = value_coef * 0.5 * mean((V - target)^2)
  entropy_coef: float = 1e-3
  normalize_advantage: bool = True  # per minibatch
  reward_scale: float = 1.0
  normalize_obs: bool = True
  # Recurrent core (policy.core_size > 0): its carry is zeroed after every
  # `core_reset_episodes`-th episode end of an env (1: every episode; n: trials of n).
  core_reset_episodes: int = 1

  def __post_init__(self):
    object.__setattr__(self, 'value_widths', tuple(self.value_widths))
    for field in ('num_envs', 'unroll_length', 'epochs', 'num_minibatches',
                  'core_reset_episodes'):
      if getattr(self, field) < 1:
        raise ValueError(f'{field}={getattr(self, field)} must be >= 1.')
    _check_common(self, ('ppo',), self.steps_per_iteration, 'num_envs * unroll_length')
    if self.exploration == 'param':
      raise ValueError(
          "exploration='param' does not fit PPO: its clipped ratio needs the log-probability "
          'of the policy that acted, which a parameter-perturbed actor does not have; use '
          '--config.exploration=action with --config.learner=ppo.')
    if self.num_envs % self.num_minibatches:
      raise ValueError(f'num_envs={self.num_envs} must be a multiple of num_minibatches='
                       f'{self.num_minibatches} (a minibatch is a subset of the envs).')
    for field in ('lr', 'clip_eps'):
      if getattr(self, field) <= 0:
        raise ValueError(f'{field}={getattr(self, field)} must be > 0.')
    if not 0.0 <= self.gae_lambda <= 1.0:
      raise ValueError(f'need 0 <= gae_lambda <= 1, got {self.gae_lambda}.')
    for field in ('max_grad_norm', 'value_coef', 'entropy_coef', 'reward_scale'):
      if getattr(self, field) < 0:
        raise ValueError(f'{field}={getattr(self, field)} must be >= 0.')

  @property
  def steps_per_iteration(self) -> int:
    """Env steps per task in one rollout (one PPO iteration)."""
    return self.num_envs * self.unroll_length

"""Static (hashable) configuration shared by the off-policy learners.

Units: an *iteration* steps every one of the `num_envs` parallel envs of a
task once, i.e. `num_envs` env steps per task. `grad_updates_per_step` is the
number of gradient updates per iteration (as in brax.training's SAC).
All step counts (`total_steps`, `eval_every`, `warmup_steps`) are env steps
per task and must be multiples of `num_envs`.
"""

from __future__ import annotations

import dataclasses

from apb_jax.policy import PolicyConfig

ALGOS = ('sac', 'td3')
MODES = ('adapters', 'all', 'shared')
EXPLORATIONS = ('action', 'param')


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
  algo: str = 'sac'
  # 'adapters': backbone frozen; 'all': every actor leaf trains, per task;
  # 'shared': per-task adapters and one backbone trained by the task-mean gradient.
  mode: str = 'adapters'
  exploration: str = 'action'       # 'action': SAC sampling / TD3 Gaussian; 'param': param noise
  policy: PolicyConfig = PolicyConfig()
  critic_widths: tuple = (256, 256)
  # Budget and schedule (env steps per task).
  total_steps: int = 100_000
  num_envs: int = 16
  eval_every: int = 10_000          # one jitted chunk = eval_every env steps
  eval_episodes: int = 4
  warmup_steps: int = 2_048         # uniform random actions, no updates
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
    for field, choices in (('algo', ALGOS), ('mode', MODES),
                           ('exploration', EXPLORATIONS)):
      if getattr(self, field) not in choices:
        raise ValueError(f'unknown {field} {getattr(self, field)!r}; choose one of '
                         f'{list(choices)}.')
    for field in ('total_steps', 'eval_every', 'warmup_steps'):
      value = getattr(self, field)
      if value < 0 or value % self.num_envs:
        raise ValueError(f'{field}={value} must be a non-negative multiple of '
                         f'num_envs={self.num_envs}; round it to one.')
    if self.eval_every <= 0 or self.total_steps % self.eval_every:
      raise ValueError(f'total_steps={self.total_steps} must be a positive multiple of '
                       f'eval_every={self.eval_every}; change one of them.')
    if self.buffer_size < self.num_envs or self.batch_size < 1:
      raise ValueError(f'buffer_size={self.buffer_size} must be >= num_envs and '
                       f'batch_size={self.batch_size} >= 1.')
    if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
      raise ValueError(f'need 0 <= gamma <= 1 and 0 < tau <= 1, got gamma={self.gamma}, '
                       f'tau={self.tau}.')

  @property
  def iterations_per_chunk(self) -> int:
    return self.eval_every // self.num_envs

  @property
  def num_chunks(self) -> int:
    return self.total_steps // self.eval_every

  def replace(self, **changes) -> 'LearnerConfig':
    return dataclasses.replace(self, **changes)

"""Learners as task-vmapped train functions: SAC, TD3 (off-policy) and PPO (on-policy).

    from apb_jax.learners import make_train
    trainer = make_train(LearnerConfig(algo='sac', mode='adapters'), family)
    trainer = make_train(PPOConfig(mode='adapters'), family)
    result = trainer.train(rng, tasks, init_params)

All share one host loop (`loop.HostLoop`): the same `train(...)` signature,
`TrainResult`, progress, checkpoints, NaN checks and sharding.
"""

from apb_jax.learners.config import LearnerConfig, PPOConfig
from apb_jax.learners.loop import TrainResult
from apb_jax.learners.ppo import PPOTrainer
from apb_jax.learners.train import LearnerState, Trainer


def make_train(config, family, per_run_backbone: bool = False):
  """The trainer for `config`: `ppo.PPOTrainer` for a PPOConfig, else `train.Trainer`;
  `per_run_backbone`: each run starts from its own backbone (loop.HostLoop)."""
  cls = PPOTrainer if isinstance(config, PPOConfig) else Trainer
  return cls(config, family, per_run_backbone)


__all__ = ['LearnerConfig', 'LearnerState', 'PPOConfig', 'PPOTrainer', 'Trainer', 'TrainResult', 'make_train']

"""Off-policy learners (SAC, TD3) as task-vmapped train functions.

    from apb_jax.learners import sac
    trainer = sac.make_train(LearnerConfig(mode='adapters'), family)
    result = trainer.train(rng, tasks, init_params)
"""

from apb_jax.learners.config import LearnerConfig
from apb_jax.learners.train import LearnerState, Trainer, TrainResult, make_train

__all__ = ['LearnerConfig', 'LearnerState', 'Trainer', 'TrainResult', 'make_train']

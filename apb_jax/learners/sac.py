"""Soft Actor-Critic: `make_train(config, family)` with `config.algo='sac'`.

The update itself is `agents.sac_update`; the loop is `train.Trainer`.
"""

from apb_jax.learners.config import LearnerConfig
from apb_jax.learners.train import Trainer


def make_train(config: LearnerConfig, family) -> Trainer:
  return Trainer(config.replace(algo='sac'), family)

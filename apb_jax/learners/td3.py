"""Twin Delayed DDPG (TD3): `make_train(config, family)` with `config.algo='td3'`.

The update itself is `agents.td3_update`; the loop is `train.Trainer`.
"""

from apb_jax.learners.config import LearnerConfig
from apb_jax.learners.train import Trainer


def make_train(config: LearnerConfig, family) -> Trainer:
  return Trainer(config.replace(algo='td3'), family)

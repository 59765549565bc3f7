"""`cheetah_vel`: see experiments/configs/common.py for the fields and profiles.

    python -m experiments.run --config=experiments/configs/cheetah_vel.py:default --workdir=runs/cheetah_vel
"""

from experiments.configs import common


def get_config(profile: str = 'default'):
  return common.get_config('cheetah_vel', profile)

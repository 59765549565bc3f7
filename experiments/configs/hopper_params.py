"""`hopper_params`: see experiments/configs/common.py for the fields and profiles.

    python -m experiments.run --config=experiments/configs/hopper_params.py:default --workdir=runs/hopper_params
"""

from experiments.configs import common


def get_config(profile: str = 'default'):
  return common.get_config('hopper_params', profile)

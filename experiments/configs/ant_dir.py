"""`ant_dir`: see experiments/configs/common.py for the fields and profiles.

    python -m experiments.run --config=experiments/configs/ant_dir.py:default --workdir=runs/ant_dir
"""

from experiments.configs import common


def get_config(profile: str = 'default'):
  return common.get_config('ant_dir', profile)

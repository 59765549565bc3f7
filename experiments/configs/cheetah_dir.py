"""`cheetah_dir`: see experiments/configs/common.py for the fields and profiles.

    python -m experiments.run --config=experiments/configs/cheetah_dir.py:default --workdir=runs/cheetah_dir
"""

from experiments.configs import common


def get_config(profile: str = 'default'):
  return common.get_config('cheetah_dir', profile)

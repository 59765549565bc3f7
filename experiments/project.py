"""The projected wall time of a profile's learner stages on a machine whose bench is measured.

    python -m experiments.project --family=cheetah_vel --profile=paper \
        --bench=experiments/measured/h200_2026-11-27.json

Reads the bench's SAC task scaling (aggregate env steps/s by tasks on the task axis, and each
K's compile seconds), takes the profile's stage plan (apb_jax/plan.py) without the meta-RL
baselines (their learners were not in the bench), and prints the seconds one call per stage
and stacked by program (plan.projected_seconds): a projection, labelled so, not a run.
"""

from __future__ import annotations

import json

from absl import app, flags

from apb_jax import baselines, plan
from apb_jax.run_config import csv
from experiments.configs import common

_FAMILY = flags.DEFINE_string('family', 'cheetah_vel', 'task family')
_PROFILE = flags.DEFINE_string('profile', 'paper', 'profile')
_BENCH = flags.DEFINE_string('bench', 'experiments/measured/h200_2026-11-27.json',
                             'a bench JSON with sac_task_scaling or task_scaling')


def projection(family: str, profile: str, bench: dict) -> dict:
  scaling = bench.get('sac_task_scaling') or bench['task_scaling']
  rates = {int(k): v['sps'] for k, v in scaling.items()}
  compile_s = max(v['compile_s'] for v in scaling.values())
  c = common.get_config(family, profile)
  methods = [m for m in csv(c.methods) if m not in baselines.NAMES]
  calls = plan.calls(c, methods, csv(c.splits))
  return {'what': 'projection, not a measurement', 'family': family, 'profile': profile,
          'methods': methods, 'measured_runs': sorted(rates), 'compile_s_per_call': compile_s,
          **plan.projected_seconds(calls, rates, compile_s)}


def main(_):
  with open(_BENCH.value) as f:
    print(json.dumps(projection(_FAMILY.value, _PROFILE.value, json.load(f)), indent=1))


if __name__ == '__main__':
  app.run(main)

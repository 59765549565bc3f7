"""The three profiles of every family's config.

Every field, with its default and the values it accepts, is declared in
`apb_jax/config_fields.py`; this file changes the defaults per profile.

    --config=experiments/configs/ant_goal.py:default --config.seed=3 --config.methods=apb,scratch

Profiles (budgets in env steps per task):
  smoke    the whole pipeline in a few minutes on a 2-core CPU: tiny networks,
           tiny budgets, every method (the meta-RL baselines included); checks
           that everything runs, not that anything learns.
  default  one family in about 1-1.3 hours on a 2-core CPU: meta-training 8 tasks x
           61,440 steps, adaptation 4 tasks x 1 seed x 30,720 steps per method and
           split (the ants adapt 102,400: see their configs); the five APB methods
           (apb_warm added two stages: cheetah_dir took 77 min, shared with other
           work); add baselines with --config.methods=...,rl2.
  paper    GPU-scale: meta-training 1,024,000 steps per task, adaptation 204,800
           steps per task on 16 tasks x 3 seeds, the oracle (5x budget) and the baselines
           on. (Budgets are multiples of 512 so PPO's rollouts fit them too.)

How many runs decide a claim (apb_jax/claims.py: tasks are the unit, sign-flip test over
tasks at 0.05, two-sided). Fewer than 6 tasks never decide (4 tasks: p >= 0.125), whatever
the seeds. Power to decide, 80%, by `python -m apb_jax.calibration --tasks
6,8,10,12,16,20 --seeds 1 --seed-sd 0 --effect D --n-sim 4000`, where D is the distance of
mean(A - B) from the claim's boundary (-margin for claim 1) in standard deviations of a
task's difference:
    D = 1.5: 8 tasks (6: 0.65)     D = 1.0: 11 (10: 0.78)     D = 0.75: 16 (12: 0.65)
    D = 0.5: ~34 (20: 0.58; stats.tasks_for_power for the t-test above 20 tasks)
Measured so far for claim 1 (docs/results.md: apb - scratch on test_id, 4 tasks x 1 seed,
six families): |mean| / sd 0.2-1.2 (median ~0.5), and the margin (0.1 x scratch's gain over
random, claims.margin) adds margin / sd, ~0.6 on cheetah_vel (gain ~130, sd ~21): D ~ 0.5-1
on most families, each from 4 runs, so rough. Hence:
  paper    16 tasks (80% at D >= 0.75) x 3 seeds: seeds shrink only the seed noise of a
           task's difference; at seed noise equal to the task spread, 1 task-sd of effect,
           calibration.calibrate gives 16 x 3 power 0.82, 16 x 2 0.75, the former 8 x 5 0.52,
           for 48 runs against 40 (one device call: the runs share the task axis).
  default  4 tasks x 1 seed fits its time budget on a 2-core CPU and cannot decide:
           its claims read `insufficient` (6 tasks at the least, 11-16 for D 0.75-1;
           --config.adapt.num_tasks=16 costs ~4x the adaptation time).
  smoke    2 tasks: `insufficient`, by design.
"""

from __future__ import annotations

import ml_collections

from apb_jax import config_fields
from apb_jax.config_fields import PROFILES


def get_config(task: str, profile: str) -> ml_collections.ConfigDict:
  """The declared defaults (apb_jax/config_fields.py) with the profile's changes."""
  if profile not in PROFILES:
    raise ValueError(f'unknown profile {profile!r}; choose one of {list(PROFILES)} '
                     f'(e.g. --config=experiments/configs/{task}.py:smoke).')
  c = config_fields.defaults()
  c.task = task
  c.profile = profile
  if profile == 'smoke':
    c.methods += ',rl2,pearl,maml'      # every method, the meta-RL baselines included
    c.policy.widths = (32, 32)
    c.rl.update(num_envs=8, batch_size=64, grad_updates_per_step=1, warmup_steps=128,
                eval_episodes=1, critic_widths=(32, 32))
    c.ppo.update(num_envs=8, unroll_length=32, num_minibatches=2, value_widths=(32, 32))
    c.meta.update(num_tasks=2, total_steps=1_024, eval_every=512)
    c.meta.distill.update(steps=50, batch_size=64, demo_steps=256)
    c.adapt.update(num_tasks=2, seeds=1, total_steps=512, eval_every=256)
    c.baselines.rl2.core_size = 16
    c.baselines.maml.num_envs = 1        # 2 x 1 x 200 env steps per iteration fit eval_every
    c.baselines.pearl.update(encoder_widths=(32, 32), context_size=16)
  elif profile == 'default':
    c.meta.update(total_steps=61_440, eval_every=20_480)
    c.adapt.update(seeds=1)
  elif profile == 'paper':
    c.methods += ',oracle,rl2,pearl,maml'
    c.meta.update(num_tasks=16, total_steps=1_024_000, eval_every=51_200)
    c.meta.distill.update(steps=20_000, demo_steps=100_000)
    c.adapt.update(num_tasks=16, seeds=3, total_steps=204_800, eval_every=10_240)
    c.rl.update(grad_updates_per_step=1, num_envs=16)
  return c

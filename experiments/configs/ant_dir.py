"""`ant_dir`: see experiments/configs/common.py for the profiles, apb_jax/config_fields.py for the fields.

    python -m experiments.run --config=experiments/configs/ant_dir.py:default --workdir=runs/ant_dir

The default profile adapts for 102,400 steps (4 tasks x 1 seed), not the common 30,720,
for a measured reason. The reward, v_xy . (cos t, sin t) - 0.5 sum(a^2) + 1, pays the
near-zero initial policy ~113 for standing (a uniform random policy flips and earns -11),
and an off-policy learner first explores its way below that before it walks. Scratch on 2
test_id tasks x 102,400 steps, mean eval return at 0 / 20k / 30k / 60k / 102k steps:
SAC (gamma 0.99) 113 / -3.5 / 7.2 / 50.1 / 173.1 (runs 175.7, 170.6); TD3 (gamma 0.97,
ant_goal's settings) 113 / 43.4 / 76.4 / 82.7 / 134.9 (runs 179.1, 90.7). At the common
30,720 steps every method is still in that dip, which is why the default profile ended
below its start; by 102,400 SAC ends above it, so SAC stays (unlike ant_goal, whose ant
never terminates and stays flipped).
"""

from experiments.configs import common


def get_config(profile: str = 'default'):
  c = common.get_config('ant_dir', profile)
  if profile == 'default':
    c.adapt.update(num_tasks=4, seeds=1, total_steps=102_400, eval_every=10_240)
  return c

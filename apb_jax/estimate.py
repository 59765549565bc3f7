"""How long the stages left will take: each stage's env steps, and a rate measured on the first.

    steps = estimate.stage_env_steps(config, methods, splits)   # {stage name: env steps}
    print(estimate.line(left, env_steps_per_s, stage))

The launcher prints one such line once, after the first two chunks of the first learner
stage that runs (the rate of one chunk with its evaluation, compile excluded). It is a rough
guide: every stage is assumed to run at that stage's env steps/s, and compiling the stages
still to come (tens of seconds each on a CPU, less from the compilation cache) is left out.
"""

from __future__ import annotations

from apb_jax import plan


def stage_env_steps(config, methods, splits) -> dict:
  """{stage name: env steps summed over its runs} of every learner stage (plan.py)."""
  return {call.stage: call.env_steps for call in plan.calls(config, methods, splits)}


def line(env_steps_left: int, env_steps_per_s: float, stage: str) -> str:
  minutes = env_steps_left / max(env_steps_per_s, 1e-9) / 60
  return (f'estimate: ~{minutes:.0f} min for the {env_steps_left:,} env steps left, at '
          f'{env_steps_per_s:.0f} env steps/s measured on {stage} (compiling the later stages '
          'not included)')

"""How long the stages left will take: each stage's env steps, and a rate measured on the first.

    steps = estimate.stage_env_steps(config, methods, splits)   # {stage name: env steps}
    print(estimate.line(left, env_steps_per_s, stage))

The launcher prints one such line once, after the first two chunks of the first learner
stage that runs (the rate of one chunk with its evaluation, compile excluded). It is a rough
guide: every stage is assumed to run at that stage's env steps/s, and compiling the stages
still to come (tens of seconds each on a CPU, less from the compilation cache) is left out.
"""

from __future__ import annotations

from apb_jax import baselines
from apb_jax.run_config import needs_meta_backbone


def stage_env_steps(config, methods, splits) -> dict:
  """{stage name: env steps summed over its tasks/runs} of every learner stage of a run."""
  c, out = config, {}
  meta = c.meta.num_tasks * c.meta.total_steps
  if needs_meta_backbone(methods) and not c.backbone_from:
    out['meta_experts' if c.meta.method == 'bc' else 'meta_train'] = meta
  runs = c.adapt.num_tasks * c.adapt.seeds
  for method in methods:
    if method in baselines.NAMES:
      out[baselines.get(method).META_STAGE] = meta * c.baselines.meta_factor
    factor = c.oracle_factor if method == 'oracle' else 1
    for split in splits:
      out[f'adapt_{method}_{split}'] = runs * c.adapt.total_steps * factor
  return out


def line(env_steps_left: int, env_steps_per_s: float, stage: str) -> str:
  minutes = env_steps_left / max(env_steps_per_s, 1e-9) / 60
  return (f'estimate: ~{minutes:.0f} min for the {env_steps_left:,} env steps left, at '
          f'{env_steps_per_s:.0f} env steps/s measured on {stage} (compiling the later stages '
          'not included)')

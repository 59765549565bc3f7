"""The stage plan of a run, computed from the config before anything runs.

    calls = plan.calls(config, methods, splits)      # [Call], in the order they run
    print(plan.describe(calls))                      # the launcher's first lines

A `Call` is one learner stage: one jitted learner program over all its runs on the task axis,
writing one result file (`results/<stage>.json`). Its `program` names what two stages must
share to run as one call with their runs side by side on the task axis (the learner, its mode
and critic setup, the budget and evaluation schedule): `stacked(calls)` groups them so, and
the experiment runs each group as one call (`Experiment.adapt_calls`; one call per stage
with --config.adapt.stack=false). The time estimate (estimate.py), the printed plan and the
GPU projection read this list. A meta-RL baseline's splits share one call (its program,
baselines/stage.py), its meta-training one of its own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from apb_jax import adapt, baselines
from apb_jax.run_config import needs_meta_backbone


@dataclasses.dataclass(frozen=True)
class Call:
  stage: str            # its result file: results/<stage>.json
  program: tuple        # stages with equal programs can share one call
  runs: int             # entries of the task axis
  steps: int            # env steps per run
  method: str | None = None   # the method and split an adaptation stage reports
  split: str | None = None

  @property
  def env_steps(self) -> int:
    return self.runs * self.steps


def calls(config, methods, splits) -> list[Call]:
  """Every learner stage of a run with `methods` on `splits`, in the order they run."""
  c, out = config, []
  if needs_meta_backbone(methods) and not c.backbone_from:
    stage = 'meta_experts' if c.meta.method == 'bc' else 'meta_train'
    out.append(Call(stage, ('meta', c.meta.method, c.learner), c.meta.num_tasks,
                    c.meta.total_steps))
  runs = c.adapt.num_tasks * c.adapt.seeds
  for method in methods:
    if method in baselines.NAMES:
      out.append(Call(baselines.get(method).META_STAGE, (method, 'meta'), c.meta.num_tasks,
                      c.meta.total_steps * c.baselines.meta_factor))
      program = (method, 'adapt')
    else:
      m = adapt.method(method)
      critic_mode, _ = adapt.critic_setup(method, c.adapt.critic)
      program = (c.learner, m.mode, critic_mode, m.oracle)
    steps = c.adapt.total_steps * (c.oracle_factor if method == 'oracle' else 1)
    out += [Call(f'adapt_{method}_{split}', program, runs, steps, method, split)
            for split in splits]
  return out


def stacked(plan: list[Call]) -> list[list[Call]]:
  """The calls grouped by program, in order of first appearance: one jitted call each."""
  groups: dict[tuple, list[Call]] = {}
  for call in plan:
    groups.setdefault(call.program, []).append(call)
  return list(groups.values())


def describe(plan: list[Call], stack: bool = True) -> str:
  """The plan in a few lines: each stage's runs and env steps, and the calls that run them
  (stacked by program, or one per stage)."""
  lines = [f'plan: {len(plan)} learner stages, {sum(c.env_steps for c in plan):,} env steps']
  lines += [f'  {c.stage}: {c.runs} runs x {c.steps:,} steps' for c in plan]
  groups = stacked(plan) if stack else [[c] for c in plan]
  how = '(stacked by program):' if stack else '(--config.adapt.stack=false):'
  lines.append(f'run as {len(groups)} call{"s" * (len(groups) != 1)} {how}')
  lines += [f'  {sum(c.runs for c in g)} runs: {" + ".join(c.stage for c in g)}'
            for g in groups]
  return '\n'.join(lines)


def projected_seconds(plan: list[Call], sps_by_runs: dict, compile_s: float) -> dict:
  """Wall seconds of `plan` one call per stage and stacked, from a measured table of aggregate
  env steps/s by runs on the task axis ({runs: steps/s}; log-log interpolation between the
  measured counts, the end rates held beyond them) plus `compile_s` per call. A projection,
  not a measurement: every call is taken to run at the learner's rate for its runs."""
  ks = np.log(np.array(sorted(sps_by_runs), np.float64))
  rates = np.log(np.array([sps_by_runs[k] for k in sorted(sps_by_runs)], np.float64))

  def seconds(group):
    runs = sum(c.runs for c in group)
    return sum(c.env_steps for c in group) / np.exp(np.interp(np.log(runs), ks, rates)) + compile_s

  return {'calls': len(plan), 'per_stage_s': float(sum(seconds([c]) for c in plan)),
          'stacked_calls': len(stacked(plan)),
          'stacked_s': float(sum(seconds(g) for g in stacked(plan)))}

"""The calibration of the claims' verdicts: known truths simulated many times, the rate of a
wrong verdict and the power per design (tasks x seeds).

    python -m apb_jax.calibration --tasks 4,8,16 --seeds 1,2,3,4,5     # the table
    rows = calibrate((8,), (1,)); rows[0]['false_superiority']          # <= 0.05 (+ MC error)

Verdicts are read as a report reads them (claims.task_means, claims.margins,
claims.decide); tests/test_claims.py holds the false-verdict rate at its stated level.
"""

from __future__ import annotations

import argparse
from typing import Callable

import numpy as np

from apb_jax.claims import ALPHA, MARGIN, decide, margins, task_means


def simulate(rng, n_sim: int, tasks: int, seeds: int, truth, *, seed_sd: float, gap: float,
             margin: float = MARGIN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """n_sim runs of a known truth: final returns of A and B [n_sim, tasks * seeds] (task-major)
  and the random returns [n_sim, tasks]. Unit: the between-task sd of A - B's true effect.
  Task t: level mu_t ~ N(0, 3^2), the reference's gain over random g_t ~ gap x U(0.5, 1.5),
  effect delta_t = truth_t + N(0, 1); run (t, s): B = mu_t + seed_sd z, A = mu_t + delta_t +
  seed_sd z'. truth: 'equal' (0), 'boundary' (-margin g_t: A worse by exactly the true
  non-inferiority margin) or a float (an effect)."""
  shape = (n_sim, tasks)
  level = rng.normal(0.0, 3.0, shape)
  gain = gap * rng.uniform(0.5, 1.5, shape)
  mean = {'equal': 0.0, 'boundary': -margin * gain}[truth] if isinstance(truth, str) else truth
  delta = mean + rng.normal(size=shape)
  runs = (n_sim, tasks * seeds)
  b = np.repeat(level, seeds, axis=1) + seed_sd * rng.normal(size=runs)
  a = np.repeat(level + delta, seeds, axis=1) + seed_sd * rng.normal(size=runs)
  return a, b, level - gain


def calibrate(tasks=(4, 8, 16), seeds=(1, 2, 3, 4, 5), *, n_sim: int = 2000,
              effect: float = 1.0, seed_sd: float = 1.0, gap: float = 10.0,
              margin: float = MARGIN, alpha: float = ALPHA,
              decide_fn: Callable = decide, rng_seed: int = 0) -> list[dict]:
  """Per design (tasks x seeds), on `n_sim` simulated runs each (`simulate`), the claims'
  verdicts read as the report reads them (task means, margins, `decide_fn`):
    false_superiority      P(supported or contradicted | A equals B), superiority
    false_non_inferiority  P(supported or contradicted | mean(A - B) = -true margin)
    power_superiority      P(supported | A beats B by `effect`)
    power_non_inferiority  P(supported | A equals B); margins of margin x gap task-sds
  and mc_se, the Monte Carlo standard error of a rate of `alpha`."""
  rng = np.random.default_rng(rng_seed)
  rows = []
  for n in tasks:
    for s in seeds:

      def verdicts(truth, fraction, n=n, s=s):
        a, b, random_task = simulate(rng, n_sim, n, s, truth, seed_sd=seed_sd, gap=gap,
                                     margin=margin)
        return decide_fn(task_means(a, s) - task_means(b, s)
                         + margins(b, random_task, s, fraction), alpha)[0]

      def rate(v, of=('supported', 'contradicted')):
        return float(np.isin(v, of).mean())

      rows.append({'tasks': n, 'seeds': s,
                   'false_superiority': rate(verdicts('equal', 0.0)),
                   'false_non_inferiority': rate(verdicts('boundary', margin)),
                   'power_superiority': rate(verdicts(effect, 0.0), 'supported'),
                   'power_non_inferiority': rate(verdicts('equal', margin), 'supported'),
                   'mc_se': float(np.sqrt(alpha * (1 - alpha) / n_sim))})
  return rows


def calibration_markdown(rows: list[dict], effect: float, seed_sd: float, gap: float,
                         margin: float = MARGIN) -> str:
  """The calibration as a markdown table."""
  lines = [f'Wrong verdicts when the truth is on the boundary (target <= {ALPHA}, Monte Carlo '
           f"s.e. {rows[0]['mc_se']:.4f}) and power, by design; effect {effect:g} task-sd, "
           f'seed noise sd {seed_sd:g}, non-inferiority margin {margin:g} x a gain over random '
           f'of ~{gap:g} (margin ~{margin * gap:g} task-sd).', '',
           '| tasks | seeds | false, superiority | false, non-inferiority | '
           'power, superiority | power, non-inferiority (A = B) |', '|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['tasks']} | {r['seeds']} | {r['false_superiority']:.3f} | "
                 f"{r['false_non_inferiority']:.3f} | {r['power_superiority']:.3f} | "
                 f"{r['power_non_inferiority']:.3f} |")
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='python -m apb_jax.calibration', description=(
      'Print the calibration of the claims\' verdicts: the rate of a wrong verdict and the '
      'power per design, on simulated runs (calibration.calibrate).'))
  parser.add_argument('--tasks', default='4,8,16', help='comma-separated task counts')
  parser.add_argument('--seeds', default='1,2,3,4,5', help='comma-separated seeds per task')
  parser.add_argument('--effect', type=float, default=1.0, help='in task-sds of the effect')
  parser.add_argument('--seed-sd', type=float, default=1.0, help='seed noise, in task-sds')
  parser.add_argument('--gap', type=float, default=10.0, help='gain over random, in task-sds')
  parser.add_argument('--n-sim', type=int, default=2000)
  args = parser.parse_args(argv)
  rows = calibrate([int(n) for n in args.tasks.split(',')],
                   [int(s) for s in args.seeds.split(',')], n_sim=args.n_sim,
                   effect=args.effect, seed_sd=args.seed_sd, gap=args.gap)
  print(calibration_markdown(rows, args.effect, args.seed_sd, args.gap), end='')


if __name__ == '__main__':
  main()

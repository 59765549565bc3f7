"""The paper's claims as measured verdicts, computed from the curves of a run (never written).

    claims = compute(curves, seeds=2, random_return={'test_id': -300.0}, budgets={...})

`curves[method][split] = (steps [n_evals], returns [runs, n_evals])`, runs = tasks x seeds
task-major, the same tasks, seeds and adapter initialisations for every method of a split
(common random numbers), so methods are compared run by run:

  1  `apb` vs `scratch` on test_id: adapting only the adapters reaches standard RL's
     return (difference of final return, and of AUC, i.e. sample efficiency);
  2  `apb_randominit` vs the reference, the oracle where it ran, else `scratch`, on
     test_id: a random frozen backbone is competent (difference of final return; the
     normalised score (R - R_random) / (R_reference_task - R_random) beside it);
  3  `apb` vs each meta-RL baseline that ran, on test_ood: APB keeps adapting where
     meta-RL falls off (difference of final return).

Statistics. A difference is the mean over runs of the paired difference, with a 95%
percentile bootstrap interval over runs. The probability of improvement P(A > B)
(Agarwal et al. 2021) is, per task, the fraction of (seed of A, seed of B) pairs where A
scores higher (ties count 1/2), averaged over tasks; its interval resamples tasks. (rliable
resamples seeds within each task, which leaves no spread at one seed per task, as in our
ant_goal default; it would also add pandas, statsmodels, arch and seaborn.) Verdict, from the
interval of the difference: above zero `supported`, below zero `contradicted`, else
`inconclusive`; `not measured` when a method the claim needs did not run.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from apb_jax.stats import auc

N_BOOT = 2000
BASELINES = ('rl2', 'pearl', 'maml')


def verdict(ci_low: float, ci_high: float) -> str:
  if ci_low > 0:
    return 'supported'
  if ci_high < 0:
    return 'contradicted'
  return 'inconclusive'


def _interval(boot: np.ndarray) -> tuple[float, float]:
  low, high = np.percentile(boot, [2.5, 97.5])
  return float(low), float(high)


def paired_difference(a, b, *, rng_seed: int = 0) -> dict:
  """Mean of a - b over runs (a, b: [runs], paired) with a 95% bootstrap interval."""
  diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  idx = np.random.default_rng(rng_seed).integers(0, diff.shape[0], (N_BOOT, diff.shape[0]))
  low, high = _interval(diff[idx].mean(axis=1))
  return {'mean': float(diff.mean()), 'ci_low': low, 'ci_high': high}


def _poi_per_task(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """a, b: [tasks, seeds] -> [tasks] P(a > b) over all seed pairs of each task."""
  wins = (a[:, :, None] > b[:, None, :]).astype(np.float64)
  ties = (a[:, :, None] == b[:, None, :]).astype(np.float64)
  return (wins + 0.5 * ties).mean(axis=(1, 2))


def probability_of_improvement(a, b, seeds: int, *, rng_seed: int = 0) -> dict:
  """P(a > b) (a, b: [runs] task-major) with a 95% bootstrap interval over tasks."""
  a = np.asarray(a, np.float64).reshape(-1, seeds)
  b = np.asarray(b, np.float64).reshape(-1, seeds)
  per_task = _poi_per_task(a, b)
  idx = np.random.default_rng(rng_seed).integers(0, per_task.shape[0],
                                                 (N_BOOT, per_task.shape[0]))
  low, high = _interval(per_task[idx].mean(axis=1))
  return {'value': float(per_task.mean()), 'ci_low': low, 'ci_high': high}


def _compare(curves, a: str, b: str, split: str, seeds: int, with_auc: bool) -> dict:
  (steps_a, ra), (steps_b, rb) = curves[a][split], curves[b][split]
  final = paired_difference(ra[:, -1], rb[:, -1])
  out = {'split': split, 'methods': [a, b], 'final_return_diff': final,
         'prob_improvement': probability_of_improvement(ra[:, -1], rb[:, -1], seeds),
         'verdict': verdict(final['ci_low'], final['ci_high'])}
  if with_auc:
    auc_diff = paired_difference(auc(steps_a, ra), auc(steps_b, rb))
    out.update(auc_diff=auc_diff, auc_verdict=verdict(auc_diff['ci_low'], auc_diff['ci_high']))
  return out


def _missing(curves, methods, split) -> list[str]:
  return [m for m in methods if split not in curves.get(m, {})]


def compute(curves: Mapping, *, seeds: int, random_return: Mapping,
            budgets: Mapping) -> list[dict]:
  """The claims (module docstring), each a dict with its numbers, verdict and budgets."""
  out = []

  def claim(number, statement, methods, split, **kwargs):
    missing = _missing(curves, methods, split)
    entry = {'claim': number, 'statement': statement, 'budgets': dict(budgets)}
    if missing:
      entry.update(split=split, methods=list(methods), verdict='not measured',
                   reason=f'{", ".join(missing)} did not run on {split}')
    else:
      entry.update(_compare(curves, *methods, split, seeds, **kwargs))
    out.append(entry)
    return entry

  claim(1, 'adapting only the adapters reaches standard RL on new tasks',
        ('apb', 'scratch'), 'test_id', with_auc=True)
  reference = 'oracle' if 'test_id' in curves.get('oracle', {}) else 'scratch'
  entry = claim(2, f'a random frozen backbone is competent (reference: {reference})',
                ('apb_randominit', reference), 'test_id', with_auc=False)
  if entry['verdict'] != 'not measured' and 'test_id' in random_return:
    entry['normalized_score'] = _normalized(curves, reference, seeds,
                                            float(random_return['test_id']))
  for baseline in BASELINES:
    if baseline in curves:
      claim(3, f'on out-of-distribution tasks APB beats {baseline}',
            ('apb', baseline), 'test_ood', with_auc=False)
  return out


def _normalized(curves, reference: str, seeds: int, random_return: float) -> dict:
  final = curves['apb_randominit']['test_id'][1][:, -1]
  ref_task = curves[reference]['test_id'][1][:, -1].reshape(-1, seeds).mean(axis=1)
  gap = np.repeat(ref_task, seeds) - random_return
  score = (final - random_return) / np.where(gap == 0, np.nan, gap)
  if not np.all(np.isfinite(score)):
    return {'mean': None, 'reason': 'the reference equals the random return on some task'}
  idx = np.random.default_rng(0).integers(0, score.shape[0], (N_BOOT, score.shape[0]))
  low, high = _interval(score[idx].mean(axis=1))
  return {'mean': float(score.mean()), 'ci_low': low, 'ci_high': high}


def _cell(stats) -> str:
  value = stats.get('mean', stats.get('value'))
  return f"{value:.2f} [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]"


def markdown(claims: list[dict]) -> list[str]:
  """The report's "Claims" section, one table row per claim."""
  lines = ['## Claims', '',
           'Differences are paired over runs (same tasks, seeds and initialisations), with '
           '95% bootstrap intervals; the verdict reads the interval of the final-return '
           'difference (above 0: supported, below: contradicted, else inconclusive).', '',
           '| # | claim | split | A vs B | final return A - B | AUC A - B | P(A > B) | '
           'verdict |', '|---|---|---|---|---|---|---|---|']
  for c in claims:
    versus = ' vs '.join(c['methods'])
    if c['verdict'] == 'not measured':
      lines.append(f"| {c['claim']} | {c['statement']} | {c['split']} | {versus} | | | | "
                   f"not measured ({c['reason']}) |")
      continue
    auc = _cell(c['auc_diff']) if 'auc_diff' in c else ''
    lines.append(f"| {c['claim']} | {c['statement']} | {c['split']} | {versus} | "
                 f"{_cell(c['final_return_diff'])} | {auc} | {_cell(c['prob_improvement'])} | "
                 f"**{c['verdict']}** |")
    score = c.get('normalized_score')
    if score and score.get('mean') is not None:
      lines.append(f"| | normalised score of apb_randominit | | | {_cell(score)} | | | |")
  budgets = claims[0]['budgets'] if claims else {}
  lines += ['', 'Budgets (env steps per task): ' + ', '.join(
      f'{k.replace("_", " ")} {v:,}' if isinstance(v, int) else f'{k} {v}'
      for k, v in budgets.items()), '']
  return lines

"""The paper's claims as measured verdicts, computed from the curves of a run (never written).

    claims = compute(curves, seeds=2, random_return={'test_id': -300.0}, budgets={...},
                     margin=0.1, final_evals=3)
    python -m apb_jax.calibration             # false-verdict rate and power per tasks x seeds

`curves[method][split] = (steps [n_evals], returns [runs, n_evals])`, runs = tasks x seeds
task-major (run r: task r // seeds, seed r % seeds), the same tasks, seeds and adapter
initialisations for every method of a split (common random numbers), so methods pair run
by run. `random_return[split]`: a float, or one value per task. Each claim declares its
hypothesis:

  1  `apb` vs `scratch` on test_id, non-inferiority: adapting only the adapters *reaches*
     standard RL's final return (and its AUC, "equal or better sample efficiency");
  2  `apb_randominit` vs the reference (the oracle where it ran, else `scratch`) on test_id,
     non-inferiority: a random frozen backbone *is competent*; beside it the normalised
     score (R - R_random) / (R_reference - R_random) per task;
  3  `apb` vs each meta-RL baseline that ran, on test_ood, superiority: APB *beats* it.

Statistics, at level ALPHA = 0.05:
- Final return: stats.final_return, each run's mean over its last `final_evals` evaluations
  (config claims.final_evals), stated with every claim.
- Tasks are the unit. A task's difference d_t is the mean over its seeds of A - B, run by
  run; runs within a task are reported (report.py) but never treated as independent.
- Margin m_t, declared before the run: 0 for superiority; for non-inferiority the fraction
  `margin` (config claims.margin) of the reference's own gain over the random policy on that
  task, margin x |R_B,t - R_random,t| (R_B,t: B's mean final return over the task's seeds),
  the same m_t for the AUC (in return units too).
- The test of mean(e) = 0, e_t = d_t + m_t (stats.task_test): the sign-flip permutation test
  over tasks, exact up to 20 tasks (all 2^n sign vectors; valid whenever e_t is symmetric
  about 0 at the boundary, as the differences of two exchangeable methods are), the t-test
  above 20. The 95% interval of mean(A - B) is the test's interval of mean(e) less mean(m).
- Verdict: the two-sided p <= 0.05 decides, and its side says which:
    supported     superiority: the interval lies above 0 (A beats B); non-inferiority: above
                  -margin (A is worse than B by less than the margin, if at all);
    contradicted  superiority: below 0 (B beats A; a narrow interval around 0 stays
                  inconclusive, as no margin was declared to call the two equal);
                  non-inferiority: below -margin (A is worse by more than the margin);
    inconclusive  neither;
    insufficient  the design cannot reach 0.05: sign flips over n tasks give at best
                  p = 2 / 2^n (4 tasks: 0.125), so under min_tasks = 6 tasks nothing is
                  decided; the entry gives `min_tasks` and `tasks_needed`, the tasks for 80%
                  power were the observed effect true (stats.tasks_for_power, a planning
                  figure; also given when inconclusive);
    not measured  a method (or random return) the claim needs is missing.
  Each side spends 2.5%, so with the truth on the boundary (mean(A - B) = -margin, or 0) a
  wrong verdict comes at most 5% of the time; `calibration.calibrate` checks this on
  simulated runs.
  Each verdict holds at its own level: no correction across claims, final return and AUC.
- P(A > B), the probability of improvement (Agarwal et al. 2021): per task the fraction of
  (seed of A, seed of B) pairs where A scores higher (ties 1/2), then its mean over tasks
  with the same test and interval over tasks (p of P = 0.5). rliable resamples seeds within
  each task, which leaves no spread at one seed per task, and brings pandas, statsmodels,
  arch and seaborn along.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from apb_jax import stats

ALPHA = 0.05
MARGIN = 0.1       # config claims.margin: non-inferiority margin, fraction of the gain over random
FINAL_EVALS = 3    # config claims.final_evals: evaluations averaged into the final return
BASELINES = ('rl2', 'pearl', 'maml')
SUPERIORITY, NON_INFERIORITY = 'superiority', 'non-inferiority'
UNDECIDED = ('inconclusive', 'insufficient')


def task_means(values, seeds: int) -> np.ndarray:
  """[..., tasks] the mean over each task's seeds of `values` [..., runs] (task-major)."""
  values = np.asarray(values, dtype=np.float64)
  return values.reshape(values.shape[:-1] + (-1, seeds)).mean(axis=-1)


def margins(reference, random_task, seeds: int, fraction: float) -> np.ndarray:
  """[..., tasks] fraction x |R_reference,t - R_random,t| from the reference's final returns
  [..., runs] and the random returns [..., tasks] (or a float)."""
  return fraction * np.abs(task_means(reference, seeds) - random_task)


def _verdicts(p_greater, p_less, n_tasks: int, alpha: float) -> np.ndarray:
  """The verdict of each test of mean(e) = 0 from its one-sided p-values over `n_tasks`."""
  verdict = np.where(np.asarray(p_greater) <= alpha / 2, 'supported',
                     np.where(np.asarray(p_less) <= alpha / 2, 'contradicted', 'inconclusive'))
  if n_tasks < stats.min_tasks(alpha):
    verdict = np.full(verdict.shape, 'insufficient')
  return verdict


def decide(e, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
  """e [..., tasks] (d_t + m_t) -> (verdict [...], two-sided p [...]) of mean(e) = 0."""
  e = np.asarray(e, dtype=np.float64)
  p_greater, p_less = stats.task_pvalues(e)
  return (_verdicts(p_greater, p_less, e.shape[-1], alpha),
          np.minimum(1.0, 2 * np.minimum(p_greater, p_less)))


def _less(value, shift):
  return None if value is None else value - shift


def difference(a, b, seeds: int, margin_task=None, alpha: float = ALPHA) -> dict:
  """mean(A - B) over tasks (a, b: [runs] paired, task-major), its 1 - alpha interval, the
  test of mean(A - B) = -margin (margin_task [tasks]; None: 0, superiority) and its verdict."""
  d = task_means(a, seeds) - task_means(b, seeds)
  m = np.zeros_like(d) if margin_task is None else np.asarray(margin_task, np.float64)
  test = stats.task_test(d + m, alpha)
  out = {'mean': float(d.mean()), 'ci_low': _less(test['ci_low'], m.mean()),
         'ci_high': _less(test['ci_high'], m.mean()), 'p_value': test['p_value'],
         'test': test['test'],
         'verdict': str(_verdicts(test['p_greater'], test['p_less'], d.shape[0], alpha)),
         'n_tasks': int(d.shape[0]), 'seeds': int(seeds), 'per_task': d.tolist()}
  if out['verdict'] == 'insufficient':
    out['min_tasks'] = stats.min_tasks(alpha)
  if out['verdict'] in UNDECIDED and d.shape[0] >= 3 and np.std(d + m) > 0:
    out['tasks_needed'] = stats.tasks_for_power(float(np.mean(d + m) / np.std(d + m, ddof=1)),
                                                alpha)
  return out


def paired_difference(a, b, *, seeds: int = 1, alpha: float = ALPHA) -> dict:
  """difference(a, b, seeds): mean of a - b over tasks with its interval, p and verdict."""
  return difference(a, b, seeds, alpha=alpha)


def _poi_per_task(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """a, b: [tasks, seeds] -> [tasks] P(a > b) over all seed pairs of each task."""
  wins = (a[:, :, None] > b[:, None, :]).astype(np.float64)
  ties = (a[:, :, None] == b[:, None, :]).astype(np.float64)
  return (wins + 0.5 * ties).mean(axis=(1, 2))


def probability_of_improvement(a, b, seeds: int, *, alpha: float = ALPHA) -> dict:
  """P(a > b) (a, b: [runs] task-major), its interval over tasks and the p of P = 0.5."""
  per_task = _poi_per_task(np.asarray(a, np.float64).reshape(-1, seeds),
                           np.asarray(b, np.float64).reshape(-1, seeds))
  test = stats.task_test(per_task - 0.5, alpha)
  return {'value': float(per_task.mean()), 'ci_low': _less(test['ci_low'], -0.5),
          'ci_high': _less(test['ci_high'], -0.5), 'p_value': test['p_value'],
          'per_task': per_task.tolist()}


def _margin(fraction: float, m: np.ndarray, reference: str) -> dict:
  if fraction == 0:
    return {'fraction': 0.0, 'value': 0.0, 'rule': 'none (superiority: A - B > 0)'}
  return {'fraction': float(fraction), 'value': float(m.mean()), 'per_task': m.tolist(),
          'rule': f'{fraction:g} x |R_{reference} - R_random| per task (claims.margin), '
                  f"{reference}'s mean final return over its seeds"}


def _compare(curves, a: str, b: str, split: str, seeds: int, hypothesis: str, with_auc: bool,
             random, margin: float, final_evals: int, alpha: float) -> dict:
  (steps_a, ra), (steps_b, rb) = curves[a][split], curves[b][split]
  fa, fb = stats.final_return(ra, final_evals), stats.final_return(rb, final_evals)
  n_tasks = fa.shape[0] // seeds
  fraction = margin if hypothesis == NON_INFERIORITY else 0.0
  random_task = stats.per_task(0.0 if random is None else random, n_tasks,
                               f'random_return[{split!r}]')
  m = margins(fb, random_task, seeds, fraction)
  final = difference(fa, fb, seeds, m, alpha)
  out = {'margin': _margin(fraction, m, b), 'level': alpha, 'n_tasks': n_tasks, 'seeds': seeds,
         'test': final['test'], 'p_value': final['p_value'], 'final_return_diff': final,
         'prob_improvement': probability_of_improvement(fa, fb, seeds, alpha=alpha),
         'verdict': final['verdict']}
  out.update({k: final[k] for k in ('min_tasks', 'tasks_needed') if k in final})
  if with_auc:
    auc_diff = difference(stats.auc(steps_a, ra), stats.auc(steps_b, rb), seeds, m, alpha)
    out.update(auc_diff=auc_diff, auc_verdict=auc_diff['verdict'])
  return out


def _normalized(curves, reference: str, seeds: int, random, final_evals: int,
                alpha: float) -> dict:
  """apb_randominit's normalised score against `reference`, per task, with its interval."""
  final = task_means(stats.final_return(curves['apb_randominit']['test_id'][1], final_evals),
                     seeds)
  ref = task_means(stats.final_return(curves[reference]['test_id'][1], final_evals), seeds)
  random_task = stats.per_task(random, final.shape[0], "random_return['test_id']")
  try:
    score = stats.normalized_score(final, ref, random_task, 1)
  except ValueError as e:
    return {'mean': None, 'reason': str(e)}
  test = stats.task_test(score, alpha)
  return {'mean': test['mean'], 'ci_low': test['ci_low'], 'ci_high': test['ci_high'],
          'per_task': score.tolist(),
          'rule': f'(R - R_random) / (R_{reference} - R_random) per task, with that task\'s '
                  'random return'}


def _missing(curves, methods, split) -> list[str]:
  return [m for m in methods if split not in curves.get(m, {})]


def compute(curves: Mapping, *, seeds: int, random_return: Mapping, budgets: Mapping,
            margin: float = MARGIN, final_evals: int = 1, alpha: float = ALPHA) -> list[dict]:
  """The claims (module docstring), each a dict with its hypothesis, margin, test, numbers,
  verdict and budgets. `final_evals` = 1: the last evaluation (the config's default is 3)."""
  out = []

  def claim(number, statement, methods, split, hypothesis, with_auc):
    missing = _missing(curves, methods, split)
    entry = {'claim': number, 'statement': statement, 'split': split, 'methods': list(methods),
             'hypothesis': hypothesis, 'final_return_rule': stats.final_rule(final_evals),
             'budgets': dict(budgets)}
    if missing:
      entry.update(verdict='not measured', reason=f'{", ".join(missing)} did not run on {split}')
    elif hypothesis == NON_INFERIORITY and split not in random_return:
      entry.update(verdict='not measured', reason=f'no random return on {split} for the margin')
    else:
      entry.update(_compare(curves, *methods, split, seeds, hypothesis, with_auc,
                            random_return.get(split), margin, final_evals, alpha))
    out.append(entry)
    return entry

  claim(1, 'adapting only the adapters reaches standard RL on new tasks',
        ('apb', 'scratch'), 'test_id', NON_INFERIORITY, with_auc=True)
  reference = 'oracle' if 'test_id' in curves.get('oracle', {}) else 'scratch'
  entry = claim(2, f'a random frozen backbone is competent (reference: {reference})',
                ('apb_randominit', reference), 'test_id', NON_INFERIORITY, with_auc=False)
  if entry['verdict'] != 'not measured':
    entry['normalized_score'] = _normalized(curves, reference, seeds, random_return['test_id'],
                                            final_evals, alpha)
  for baseline in BASELINES:
    if baseline in curves:
      claim(3, f'on out-of-distribution tasks APB beats {baseline}',
            ('apb', baseline), 'test_ood', SUPERIORITY, with_auc=False)
  return out


# The report's section --------------------------------------------------------------------


def final_rule_of(claims: list[dict]) -> str:
  """The final return's rule the claims were computed with (reports from before it: 1)."""
  return claims[0].get('final_return_rule', stats.final_rule(1)) if claims else (
      stats.final_rule(1))


def _cell(stats_: Mapping) -> str:
  value = stats_.get('mean', stats_.get('value'))
  if stats_['ci_low'] is None:
    return f'{value:.2f} [no interval]'
  return f"{value:.2f} [{stats_['ci_low']:.2f}, {stats_['ci_high']:.2f}]"


def _hypothesis(c: Mapping) -> str:
  if c['hypothesis'] == SUPERIORITY:
    return 'superiority (A - B > 0)'
  m = c['margin']
  return (f"non-inferiority (A - B > -{m['value']:.2f}: {m['fraction']:g} x "
          f"{c['methods'][1]}'s gain over random)")


def _verdict(c: Mapping) -> str:
  notes = []
  if c['verdict'] == 'insufficient':
    notes.append(f"{c['n_tasks']} tasks; {c['min_tasks']} could decide it")
  if c['verdict'] in UNDECIDED and c.get('tasks_needed'):
    notes.append(f"~{c['tasks_needed']} tasks for 80% power at the observed effect")
  return f"**{c['verdict']}**" + (f" ({'; '.join(notes)})" if notes else '')


def markdown(claims: list[dict]) -> list[str]:
  """The report's "Claims" section, one table row per claim."""
  rule = final_rule_of(claims)
  lines = ['## Claims', '',
           'Tasks are the unit: each task\'s paired differences (same tasks, seeds and '
           'initialisations) are averaged over its seeds, and the test is the sign-flip '
           'permutation test over tasks (exact up to 20 tasks, else the t-test) at level '
           '0.05, two-sided. Non-inferiority ("reaches", "is competent") is supported when '
           'the 95% interval of A - B lies above -margin (the margin: a declared fraction '
           'of the reference\'s gain over the random policy, per task) and contradicted when '
           'it lies below; superiority ("beats") is supported above 0 and contradicted below '
           '0. Insufficient: too few tasks for any outcome to reach 0.05 (at least 6 are '
           f'needed). Final return: {rule}.', '',
           '| # | claim | split | A vs B | hypothesis | final return A - B [95% CI] | '
           'AUC A - B [95% CI] | P(A > B) [95% CI] | test | verdict |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for c in claims:
    versus = ' vs '.join(c['methods'])
    if c['verdict'] == 'not measured':
      lines.append(f"| {c['claim']} | {c['statement']} | {c['split']} | {versus} | "
                   f"{c['hypothesis']} | | | | | not measured ({c['reason']}) |")
      continue
    auc = f"{_cell(c['auc_diff'])}: {c['auc_verdict']}" if 'auc_diff' in c else ''
    lines.append(f"| {c['claim']} | {c['statement']} | {c['split']} | {versus} | "
                 f"{_hypothesis(c)} | {_cell(c['final_return_diff'])} | {auc} | "
                 f"{_cell(c['prob_improvement'])} | {c['test']}, {c['seeds']} "
                 f"seed{'s' if c['seeds'] != 1 else ''} per task, p = {c['p_value']:.3g} | "
                 f'{_verdict(c)} |')
    score = c.get('normalized_score')
    if score and score.get('mean') is not None:
      lines.append(f"| | normalised score of apb_randominit, per task | | | | {_cell(score)} "
                   '| | | | |')
  budgets = claims[0]['budgets'] if claims else {}
  lines += ['', 'Budgets (env steps per task): ' + ', '.join(
      f'{k.replace("_", " ")} {v:,}' if isinstance(v, int) else f'{k} {v}'
      for k, v in budgets.items()), '']
  return lines

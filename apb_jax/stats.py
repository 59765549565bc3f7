"""Statistics of learning curves: per-run summaries (bootstrap intervals, IQM, AUC, final
return, normalised score) and the task-level tests behind the claims (sign flips, t).

The per-run summaries' intervals are 95% percentile bootstraps over runs, a description of
the runs, not a test (claims.py tests, with tasks as the unit). Everything is
deterministic (fixed seeds), so the same curves give the same numbers.
"""

from __future__ import annotations

import numpy as np
import scipy.stats


def _bootstrap_ci(values: np.ndarray, rng_seed: int, n_boot: int) -> tuple[float, float]:
  """95% percentile bootstrap interval of the mean of `values` [runs]; one run -> (v, v)."""
  n = values.shape[0]
  idx = np.random.default_rng(rng_seed).integers(0, n, size=(n_boot, n))
  boot_means = values[idx].mean(axis=1)  # [n_boot]
  low, high = np.percentile(boot_means, [2.5, 97.5])
  return float(low), float(high)


def _iqm(values: np.ndarray) -> float:
  """Interquartile mean: sort, drop floor(n/4) values from each end, mean the rest."""
  cut = int(0.25 * values.shape[0])
  kept = np.sort(values)[cut:values.shape[0] - cut]
  return float(kept.mean())


def summarize(values, *, rng_seed: int = 0, n_boot: int = 2000) -> dict:
  """values [runs] -> {'mean', 'ci_low', 'ci_high', 'iqm', 'per_run'}, all Python floats."""
  values = np.asarray(values, dtype=np.float64)
  if values.ndim != 1 or values.shape[0] == 0:
    raise ValueError(f'summarize needs a non-empty 1-D array of per-run values, got shape '
                     f'{values.shape}')
  low, high = _bootstrap_ci(values, rng_seed, n_boot)
  return {'mean': float(values.mean()), 'ci_low': low, 'ci_high': high, 'iqm': _iqm(values),
          'per_run': [float(v) for v in values]}


def auc(steps, returns) -> np.ndarray:
  """[runs] area under each curve (trapezoid rule) / (steps[-1] - steps[0]).

  This is the mean eval return over training, in return units, so it can be read beside
  the final return: a method that learns sooner has a larger AUC at equal final return.
  """
  steps = np.asarray(steps, dtype=np.float64)
  returns = np.asarray(returns, dtype=np.float64)
  if steps.ndim != 1 or steps.shape[0] < 2:
    raise ValueError(f'auc needs at least 2 evaluation points, got steps of shape {steps.shape}; '
                     'evaluate at least before and after training (set more eval points)')
  if returns.ndim != 2 or returns.shape[1] != steps.shape[0]:
    raise ValueError(f'returns must be [runs, {steps.shape[0]}], got {returns.shape}')
  if np.any(np.diff(steps) <= 0):
    raise ValueError(f'steps must be strictly increasing, got {steps.tolist()}')
  widths = np.diff(steps)  # [n_evals - 1]
  area = ((returns[:, 1:] + returns[:, :-1]) / 2.0 * widths).sum(axis=1)  # [runs]
  return area / (steps[-1] - steps[0])


def final_return(returns, final_evals: int = 1) -> np.ndarray:
  """[runs] each run's mean over its last `final_evals` evaluations (returns [runs, n_evals]),
  never the one before training: at most n_evals - 1 of them. One evaluation is a few
  episodes; the mean of the last few is a steadier final figure."""
  returns = np.asarray(returns, dtype=np.float64)
  k = max(1, min(int(final_evals), returns.shape[1] - 1))
  return returns[:, -k:].mean(axis=1)


def final_rule(final_evals: int) -> str:
  """The final return's rule, as the report states it."""
  if final_evals == 1:
    return 'the deterministic evaluation return at the last evaluation'
  return (f"each run's mean deterministic evaluation return over its last {final_evals} "
          'evaluations (fewer where the curve is shorter; never the one before training)')


def per_task(value, n_tasks: int, what: str) -> np.ndarray:
  """[n_tasks] from a float (the same for every task) or a sequence of n_tasks values."""
  out = np.asarray(value, dtype=np.float64)
  if out.ndim == 0:
    return np.full(n_tasks, float(out))
  if out.shape != (n_tasks,):
    raise ValueError(f'{what} must be a float or one value per task ({n_tasks}), got shape '
                     f'{out.shape}')
  return out


def normalized_score(final, reference_task, random_task, seeds: int) -> np.ndarray:
  """[runs] (R - R_random) / (R_reference - R_random) of each run's final return R (task-major
  [tasks * seeds]), against its own task's reference mean and random return ([tasks] each).
  ValueError where the reference equals the random return (the score is undefined)."""
  gap = np.asarray(reference_task, np.float64) - random_task
  if np.any(gap == 0):
    raise ValueError('the reference final return equals the random return on some task; '
                     'normalised score undefined')
  return (np.asarray(final, np.float64) - np.repeat(random_task, seeds)) / np.repeat(gap, seeds)


def curve_summary(steps, returns, *, rng_seed: int = 0) -> dict:
  """steps [n_evals], returns [runs, n_evals] -> per-point mean and 95% bootstrap CI lists."""
  returns = np.asarray(returns, dtype=np.float64)
  out = {'steps': [int(s) for s in steps], 'mean': [], 'ci_low': [], 'ci_high': []}
  for column in returns.T:
    point = summarize(column, rng_seed=rng_seed)
    for key in ('mean', 'ci_low', 'ci_high'):
      out[key].append(point[key])
  return out


def steps_to_threshold(steps, returns, threshold: float) -> np.ndarray:
  """[runs] env steps at each run's first evaluation with return >= `threshold`; inf for a
  run that never reaches it (kept, not dropped). Resolution: the evaluation interval."""
  steps = np.asarray(steps, dtype=np.float64)
  hit = np.asarray(returns, dtype=np.float64) >= threshold  # [runs, n_evals]
  return np.where(hit.any(axis=1), steps[np.argmax(hit, axis=1)], np.inf)


def threshold_summary(steps, returns, threshold: float) -> dict:
  """{'threshold', 'fraction_reached', 'median', 'per_run'}: steps to `threshold` per run
  (None where never reached) and their median over all runs, the runs that never reach it
  counted as infinitely slow (so None unless more than half reach it)."""
  at = steps_to_threshold(steps, returns, threshold)
  median = float(np.median(at))
  return {'threshold': float(threshold), 'fraction_reached': float(np.isfinite(at).mean()),
          'median': median if np.isfinite(median) else None,
          'per_run': [float(x) if np.isfinite(x) else None for x in at]}


# Tasks as the unit -------------------------------------------------------------------------
# The claims' tests (claims.py) take one value per task (the mean over its seeds) and ask
# whether their mean differs from 0. Up to EXACT_MAX_TASKS tasks: the sign-flip permutation
# test, exact (every one of the 2^n sign vectors), valid whenever the values are symmetric
# about the null's mean, as paired differences of exchangeable methods are; its confidence
# interval is the set of means the test does not reject. Above: the one-sample t-test and
# t-interval (scipy.stats.ttest_1samp), where the mean of > 20 tasks is near normal.

EXACT_MAX_TASKS = 20


def _subset_sums(x: np.ndarray) -> np.ndarray:
  """[..., n] -> [..., 2^n]: the sum of x over every subset (bit i of the index: x_i in it)."""
  sums = np.zeros(x.shape[:-1] + (1,))
  for i in range(x.shape[-1]):
    sums = np.concatenate([sums, sums + x[..., i:i + 1]], axis=-1)
  return sums


def _pairs_at_most(a: np.ndarray, b: np.ndarray, limit: np.ndarray) -> np.ndarray:
  """[...] the number of (i, j) with a[..., i] + b[..., j] <= limit[...], by one merge: a
  stable sort of [b, limit - a] puts each b_j before every limit - a_i >= b_j."""
  keys = np.concatenate([b, limit[..., None] - a], axis=-1)
  from_b = np.argsort(keys, axis=-1, kind='stable') < b.shape[-1]
  return np.where(from_b, 0, np.cumsum(from_b, axis=-1)).sum(axis=-1)


def sign_flip_pvalues(x) -> tuple[np.ndarray, np.ndarray]:
  """x [..., n] -> (p_greater, p_less) [...]: exact one-sided p-values of the sign-flip test
  of mean 0, the fraction of the 2^n sign vectors s with mean(s x) >= mean(x) (<= for
  p_less), the identity included: p_greater of 4 positive values is 1/16.

  This is scipy.stats.permutation_test((x,), np.mean, permutation_type='samples',
  n_resamples=np.inf) (the tests check it), which enumerates all 2^n vectors per row; here
  flipping the set S lowers the mean iff sum_S x > 0, so p_greater counts the subsets with
  sum_S x <= 0, met in the middle (the subset sums of each half, 2 x 2^(n/2), then one
  merge), fast enough for the calibration's many rows. Sums equal to rounding count as ties.
  """
  x = np.asarray(x, dtype=np.float64)
  n = x.shape[-1]
  tol = 1e-12 * np.abs(x).sum(axis=-1)
  a, b = _subset_sums(x[..., :n // 2]), _subset_sums(x[..., n // 2:])
  return _pairs_at_most(a, b, tol) / 2.0**n, _pairs_at_most(-a, -b, tol) / 2.0**n


def min_tasks(alpha: float) -> int:
  """The fewest values at which the two-sided sign-flip test can reach `alpha`: its smallest
  p-value is 2 / 2^n (6 at 0.05, where 5 give at best 0.0625 and 4 give 0.125)."""
  return int(np.ceil(np.log2(2.0 / alpha) - 1e-12))


def _flip_bounds(x: np.ndarray, alpha: float) -> tuple:
  """The exact sign-flip interval of the mean at level 1 - alpha: mean mu0 is rejected
  below iff p_greater(x - mu0) = (1 + #{nonempty S: mean_S x <= mu0}) / 2^n <= alpha / 2,
  i.e. iff mu0 lies below the (k+1)-th smallest subset mean, k = floor(alpha/2 2^n) - 1;
  likewise above. (None, None) when k < 0 (fewer than min_tasks values)."""
  n = x.shape[0]
  k = int(np.floor(alpha / 2 * 2.0**n + 1e-9)) - 1
  if k < 0:
    return None, None
  means = (_subset_sums(x) / np.maximum(_subset_sums(np.ones(n)), 1))[1:]   # nonempty S
  return float(np.partition(means, k)[k]), float(np.partition(means, -k - 1)[-k - 1])


def task_pvalues(x) -> tuple[np.ndarray, np.ndarray]:
  """x [..., tasks] -> one-sided (p_greater, p_less) of mean 0: sign flips up to
  EXACT_MAX_TASKS tasks, else the t-test."""
  x = np.asarray(x, dtype=np.float64)
  if x.shape[-1] <= EXACT_MAX_TASKS:
    return sign_flip_pvalues(x)
  return tuple(scipy.stats.ttest_1samp(x, 0.0, axis=-1, alternative=side).pvalue
               for side in ('greater', 'less'))


def task_test(x, alpha: float = 0.05) -> dict:
  """x [tasks] -> {'mean', 'ci_low', 'ci_high', 'p_value', 'test', 'p_greater', 'p_less'}: the
  mean, its 1 - alpha interval (None where the design cannot exclude any value), the
  two-sided p-value of mean 0 (twice the smaller one-sided one) and the one-sided ones,
  sign flips or t as task_pvalues."""
  x = np.asarray(x, dtype=np.float64)
  n = x.shape[0]
  p_greater, p_less = task_pvalues(x)
  if n <= EXACT_MAX_TASKS:
    low, high = _flip_bounds(x, alpha)
    test = f'sign-flip permutation over {n} tasks, exact ({2**n:,} sign vectors)'
  else:
    ci = scipy.stats.ttest_1samp(x, 0.0).confidence_interval(1 - alpha)
    low, high = float(ci.low), float(ci.high)
    test = f't-test over {n} tasks'
  return {'mean': float(x.mean()), 'ci_low': low, 'ci_high': high,
          'p_value': float(min(1.0, 2 * min(p_greater, p_less))), 'test': test,
          'p_greater': float(p_greater), 'p_less': float(p_less)}


def tasks_for_power(effect: float, alpha: float = 0.05, power: float = 0.8,
                    most: int = 10_000):
  """The fewest tasks (>= min_tasks) at which the two-sided t-test at `alpha` has `power` to
  detect a mean of `effect` per-task standard deviations (noncentral t); None if more than
  `most` or no effect. A planning figure: the sign-flip test needs a few more below ~10."""
  if not np.isfinite(effect) or effect == 0:
    return None
  n = np.arange(max(min_tasks(alpha), 2), most + 1)
  crit = scipy.stats.t.ppf(1 - alpha / 2, n - 1)
  nc = abs(effect) * np.sqrt(n)
  reach = (scipy.stats.nct.sf(crit, n - 1, nc) + scipy.stats.nct.cdf(-crit, n - 1, nc)) >= power
  return int(n[np.argmax(reach)]) if reach.any() else None

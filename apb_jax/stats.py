"""Per-run statistics of learning curves: bootstrap intervals, IQM, AUC.

Every interval is a 95% percentile bootstrap over runs; everything is
deterministic (fixed seeds), so the same curves give the same numbers.
"""

from __future__ import annotations

import numpy as np


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

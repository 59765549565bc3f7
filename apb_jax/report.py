"""Experiment report: learning curves -> summary statistics, report.json, report.md, plots.

Input, `results[method][split]`:
    {'steps':   int   [n_evals]        env steps per task at each evaluation, steps[0] == 0,
     'returns': float [runs, n_evals]  deterministic eval return of each run at each step}
`runs` = tasks x seeds, flattened task-major: run r is task r // seeds, seed r % seeds.
Methods usually are 'apb', 'apb_randominit', 'scratch', 'finetune', 'oracle' (any string is
accepted); splits usually 'test_id' and 'test_ood'. The oracle may have more evaluations.

Statistics per (method, split), every interval a 95% percentile bootstrap over runs:
    start             [runs]  return at step 0, before any adaptation (zero-shot)
    final_return      [runs]  mean of each run's last `final_evals` evaluations (1: the last;
                              the rule is stated with each claim)
    auc               [runs]  area under the curve / (steps[-1] - steps[0]), i.e. the mean eval
                              return over training, in return units (a sample-efficiency measure)
    normalized_score  [runs]  (R - R_random_task) / (R_oracle_task - R_random_task) of the final
                              return, only when 'oracle' ran; `random_return[split]` is a
                              float or one value per task
    steps_to_threshold        env steps at which each run's curve first reaches scratch's mean
                              final return on the split (only when 'scratch' ran): per run
                              (None: never), the fraction that reached it, the median over
                              all runs (never = infinitely slow; None unless more than half reach)
    curve             [n_evals] mean and CI of the return at each evaluation
and `claims`: the paper's claims as measured verdicts (claims.py). Transfer, for the methods
over the meta-trained backbone when meta-training's final train return is known:
    transfer          {'meta_final': meta-training's mean final return over the train tasks,
                       'start_to_meta_final': start mean / meta_final (None unless meta_final
                       > 0: a ratio of costs says nothing)}
and `inherits[method]`: what each method starts from (backbone, adapters, normaliser, critic);
with --config.backbone_from, `backbone_source` (inherit.source): the run, its family, its
train tasks and what was carried.
IQM is the interquartile mean (rliable's scipy.stats.trim_mean(x, 0.25)). Everything is
deterministic: the same input gives the same dict, hence the same report.json.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from apb_jax import claims as claims_lib
from apb_jax.files import atomic_write, write_json
from apb_jax import stats
from apb_jax.stats import auc, curve_summary, steps_to_threshold, summarize, threshold_summary

__all__ = ['build_report', 'write_all', 'summarize', 'auc', 'curve_summary',
           'steps_to_threshold', 'threshold_summary']

CANONICAL_METHODS = ('apb', 'apb_warm', 'apb_randominit', 'scratch', 'finetune', 'oracle')
METHOD_COLORS = {
    'apb': 'tab:blue', 'apb_warm': 'tab:cyan', 'apb_randominit': 'tab:purple',
    'scratch': 'tab:orange',
    'finetune': 'tab:green', 'oracle': 'black'}
_EXTRA_COLORS = ('tab:red', 'tab:brown', 'tab:pink', 'tab:olive', 'tab:gray')
META_BACKBONE = 'meta-trained'   # inherits[method]['backbone'] of the methods that get `transfer`
TIMING_KEYS = {'total_s': float, 'compile_s': float, 'env_steps': int, 'env_steps_per_s': float}


def _ordered_methods(methods: Sequence[str]) -> list[str]:
  return [m for m in CANONICAL_METHODS if m in methods] + [
      m for m in methods if m not in CANONICAL_METHODS]


def _checked_curve(results: Mapping, method: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps [n_evals] int, returns [runs, n_evals] float64) after shape/finiteness checks."""
  entry = results[method][split]
  steps = np.asarray(entry['steps'])
  returns = np.asarray(entry['returns'], dtype=np.float64)
  where = f'results[{method!r}][{split!r}]'
  if steps.ndim != 1 or steps.shape[0] < 2:
    raise ValueError(f'{where}: steps must be 1-D with >= 2 evaluations, got {steps.shape}')
  if returns.ndim != 2 or returns.shape[1] != steps.shape[0] or returns.shape[0] == 0:
    raise ValueError(f'{where}: returns must be [runs, len(steps)={steps.shape[0]}], '
                     f'got {returns.shape}')
  if not np.all(np.isfinite(returns)):
    raise ValueError(f'{where}: returns contain NaN or inf')
  return steps.astype(np.int64), returns


def build_report(results: Mapping, *, task: str, profile: str, learner: str, exploration: str,
                 seeds: int, random_return: Mapping, timing: Mapping,
                 budgets: Mapping | None = None, critic: str = 'fresh',
                 margin: float = claims_lib.MARGIN, final_evals: int = 1,
                 inherits: Mapping | None = None, meta_final: float | None = None) -> dict:
  """Summary dict of an experiment (schema in the module docstring and report.json).

  `budgets` (env steps per task of each phase) is stated with the claims (claims.py);
  `margin` and `final_evals` are the config's claims.margin and claims.final_evals;
  `inherits[method]` (what it starts from; the methods whose backbone is META_BACKBONE get
  `transfer`) and `meta_final` (meta-training's mean final train return)
  are stated with each method.
  """
  inherits = dict(inherits or {})
  seeds = int(seeds)
  if not results:
    raise ValueError('results is empty: no method produced learning curves')
  missing = [k for k in TIMING_KEYS if k not in timing]
  if missing:
    raise ValueError(f'timing lacks {missing}; it needs {list(TIMING_KEYS)}')
  curves = {m: {s: _checked_curve(results, m, s) for s in results[m]}
            for m in _ordered_methods(list(results))}
  for method, splits in curves.items():
    for split, (_, returns) in splits.items():
      if returns.shape[0] % seeds:
        raise ValueError(f'results[{method!r}][{split!r}]: {returns.shape[0]} runs is not '
                         f'tasks x seeds with seeds={seeds}')
  methods_out = {}
  for method, splits in curves.items():
    methods_out[method] = {}
    for split, (steps, returns) in splits.items():
      entry = {'start': summarize(returns[:, 0]),
               'final_return': summarize(stats.final_return(returns, final_evals)),
               'auc': summarize(auc(steps, returns)),
               'curve': curve_summary(steps, returns)}
      if 'oracle' in curves:
        entry['normalized_score'] = summarize(
            _normalized(curves, method, split, seeds, random_return, final_evals))
      if meta_final is not None and inherits.get(method, {}).get('backbone') == META_BACKBONE:
        entry['transfer'] = {'meta_final': float(meta_final), 'start_to_meta_final': (
            entry['start']['mean'] / meta_final if meta_final > 0 else None)}
      methods_out[method][split] = entry
  for split, (_, scratch_returns) in curves.get('scratch', {}).items():
    # scratch's mean final return, by the report's rule (the last `final_evals` evaluations)
    threshold = float(stats.final_return(scratch_returns, final_evals).mean())
    for method, splits in curves.items():
      if split in splits:
        methods_out[method][split]['steps_to_threshold'] = threshold_summary(
            *splits[split], threshold)
  return {'task': str(task), 'profile': str(profile), 'learner': str(learner),
          'exploration': str(exploration), 'critic': str(critic), 'seeds': seeds,
          'methods': methods_out,
          'inherits': {m: dict(v) for m, v in inherits.items() if m in methods_out},
          'random_return': {str(s): _floats(r) for s, r in random_return.items()},
          'claims': claims_lib.compute(curves, seeds=seeds, random_return=random_return,
                                       budgets=budgets or {}, margin=margin,
                                       final_evals=final_evals),
          'timing': {k: cast(timing[k]) for k, cast in TIMING_KEYS.items()}}


def _floats(value):
  """A random return for report.json: a float, or a list of one per task."""
  value = np.asarray(value, dtype=np.float64)
  return float(value) if value.ndim == 0 else value.tolist()


def _random_level(report: Mapping, split: str) -> float:
  """The random return of `split` as one number (the mean over tasks where there are several)."""
  return float(np.mean(report['random_return'][split]))


def _normalized(curves: Mapping, method: str, split: str, seeds: int,
                random_return: Mapping, final_evals: int) -> np.ndarray:
  """[runs] (R - R_random_task) / (R_oracle_task - R_random_task), R the final return."""
  if split not in curves['oracle']:
    raise ValueError(f'oracle has no {split!r} split to normalise {method!r} against')
  if split not in random_return:
    raise ValueError(f'random_return lacks split {split!r}')
  final = stats.final_return(curves[method][split][1], final_evals)  # [runs]
  oracle_final = stats.final_return(curves['oracle'][split][1], final_evals)  # [runs]
  if final.shape != oracle_final.shape:
    raise ValueError(f'{method!r}/{split!r} has {final.shape[0]} runs but oracle has '
                     f'{oracle_final.shape[0]}; normalisation needs the same tasks and seeds')
  oracle_per_task = claims_lib.task_means(oracle_final, seeds)  # [tasks]
  rand = stats.per_task(random_return[split], oracle_per_task.shape[0],
                        f'random_return[{split!r}]')
  try:
    return stats.normalized_score(final, oracle_per_task, rand, seeds)
  except ValueError:
    raise ValueError(f'{split!r}: oracle final return equals the random return on some task; '
                     'normalised score undefined') from None


def _splits(report: Mapping) -> list[str]:
  """Splits in order of first appearance over the report's methods."""
  out = []
  for splits in report['methods'].values():
    out += [s for s in splits if s not in out]
  return out


def method_color(method: str, methods: Sequence[str]) -> str:
  """Fixed colour for canonical methods; others cycle through spare colours by position."""
  if method in METHOD_COLORS:
    return METHOD_COLORS[method]
  extra = [m for m in methods if m not in METHOD_COLORS]
  return _EXTRA_COLORS[extra.index(method) % len(_EXTRA_COLORS)]


def _save_figure(fig: Figure, path: str, dpi: int = 120) -> None:
  atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=dpi, bbox_inches='tight'))


def _ci_cell(stats: Mapping) -> str:
  return f"{stats['mean']:.2f} [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]"


def _count(n: int, noun: str) -> str:
  """'1 seed', '3 seeds'."""
  return f'{n} {noun}' if n == 1 else f'{n} {noun}s'


def write_markdown(report: Mapping, path: str, plot_files: Sequence[str] = ()) -> None:
  """report.md: header, timing, a table per split, how to read it, links to the plots."""
  t = report['timing']
  lines = [f"# {report['task']}", '',
           f"profile `{report['profile']}`, learner `{report['learner']}`, exploration "
           f"`{report['exploration']}`, critic `{report.get('critic', 'fresh')}`, adapter "
           f"`{report.get('adapter', 'linear')}`, "
           f"{_count(report['seeds'], 'seed')} per task", '',
           f"Wall time {t['total_s'] / 60:.1f} min (compile {t['compile_s']:.1f} s), "
           f"{t['env_steps']:,} env steps, {t['env_steps_per_s']:.0f} env steps/s", '']
  if 'compile' in report:   # the launch that wrote it (compile_stats.py)
    c = report['compile']
    lines += [f"This launch compiled {c['programs_compiled']} programs ({c['cache_hits']} more "
              f"loaded from the compilation cache): {c['trace_s']:.1f} s tracing, "
              f"{c['lower_s']:.1f} s lowering, {c['backend_s']:.1f} s compiling"
              + (f"; {c['programs_loaded']} learner programs read from the program cache "
                 f"(apb_jax/programs.py), {c['programs_traced']} traced"
                 if c.get('programs_loaded', 0) + c.get('programs_traced', 0) else '') + '.', '']
  if 'backbone_source' in report:   # --config.backbone_from
    b = report['backbone_source']
    n = len(next(iter(b['train_tasks'].values()), []))
    lines += [f"Backbone from `{b['run']}`: meta-trained on {b['family']} "
              f"({_count(n, 'train task')}); carried here: {b['carried']}.", '']
  for split in _splits(report):
    entries = {m: s[split] for m, s in report['methods'].items() if split in s}
    normalized = any('normalized_score' in e for e in entries.values())
    head = ['method', 'return before training', 'final return mean [95% CI]', 'IQM',
            'AUC mean [95% CI]']
    head += ['normalized score mean [95% CI]'] if normalized else []
    lines += [f'## {split}', '', '| ' + ' | '.join(head) + ' |',
              '|' + '---|' * len(head)]
    for method, e in entries.items():
      row = [method, f"{e['curve']['mean'][0]:.2f}", _ci_cell(e['final_return']),
             f"{e['final_return']['iqm']:.2f}", _ci_cell(e['auc'])]
      row += [_ci_cell(e['normalized_score'])] if normalized else []
      lines.append('| ' + ' | '.join(row) + ' |')
    if split in report['random_return']:
      lines += ['', f"Random policy return: {_random_level(report, split):.2f}"]
    lines += _transfer_lines(entries)
    if 'apb' in entries and 'steps_to_threshold' in entries['apb']:
      lines += ['', _speedup_line(entries['apb']['steps_to_threshold'],
                                  entries['scratch']['steps_to_threshold'],
                                  entries['scratch']['curve']['mean'][0])]
    lines.append('')
  if report.get('inherits'):
    lines += ['## What each method starts from', '',
              '| method | backbone | adapters | normaliser | critic | trainable policy params |',
              '|---|---|---|---|---|---|']
    lines += [f"| {m} | {v['backbone']} | {v['adapters']} | {v['obs_stats']} | {v['critic']} | "
              f"{v.get('trainable_params', '')} |" for m, v in report['inherits'].items()]
    lines.append('')
  claims = report.get('claims', [])
  lines += claims_lib.markdown(claims)
  lines += ['## How to read this', '',
            f'Final return is {claims_lib.final_rule_of(claims)}; compare it with the return '
            'before training (the initial policy, whose '
            'near-zero actions often beat the random policy by their control cost alone). '
            'AUC is the mean evaluation return over training (area under the learning '
            'curve divided by its length in env steps), a measure of sample efficiency. '
            'Intervals are 95% percentile bootstrap intervals of the mean over tasks x seeds, '
            'a description of the runs (the claims test with tasks as the unit); '
            'IQM is the interquartile mean (mean of the middle 50% of runs).']
  if 'oracle' in report['methods']:
    lines[-1] += (' Normalized score is (R - R_random) / (R_oracle - R_random) per run, with '
                  "R_oracle the oracle's mean final return on the same task and R_random that "
                  "task's random return: 0 is random, 1 is the oracle. The oracle's budget is "
                  'larger, so its AUC spans a longer run.')
  lines.append('')
  lines += [f'![{os.path.splitext(p)[0]}]({p})' for p in plot_files]
  atomic_write(path, lambda f: f.write(('\n'.join(lines) + '\n').encode()))


def _transfer_lines(entries: Mapping) -> list[str]:
  """The zero-shot line of a split: each meta-backbone method's start as a share of
  meta-training's final train return (none where that is a cost: no ratio)."""
  shares = {m: e['transfer'] for m, e in entries.items()
            if e.get('transfer', {}).get('start_to_meta_final') is not None}
  if not shares:
    return []
  meta_final = next(iter(shares.values()))['meta_final']
  text = '; '.join(f"{m} {entries[m]['start']['mean']:.2f} ({t['start_to_meta_final']:.0%})"
                   for m, t in shares.items())
  return ['', f"Zero-shot: the start of each method over the meta-trained backbone, as a share "
          f"of meta-training's final train return ({meta_final:.2f}): {text}."]


def _speedup_line(apb: Mapping, scratch: Mapping, scratch_start: float) -> str:
  """How many times fewer (or more) env steps apb needed than scratch to reach the threshold;
  flagged when scratch ended below its own start (runs starting above it count from step 0)."""
  def runs(t):
    return f"{t['median']:.0f} steps, {t['fraction_reached']:.0%} of runs reached it" if (
        t['median'] is not None) else f"no median ({t['fraction_reached']:.0%} of runs reached it)"
  head = (f"Steps to scratch's mean final return ({apb['threshold']:.2f}), median over runs: "
          f"apb {runs(apb)}; scratch {runs(scratch)}.")
  a, s = apb['median'], scratch['median']
  if a is None or s is None:
    verdict = 'No ratio: a median is never reached.'
  elif a == 0:
    verdict = 'apb starts at or above it, before any training.'
  elif a <= s:
    verdict = f'apb needed {s / a:.2f}x fewer steps than scratch.'
  else:
    verdict = f'apb needed {a / s:.2f}x more steps than scratch.'
  if apb['threshold'] < scratch_start:
    verdict += (f" Scratch ended below its mean start ({scratch_start:.2f}): runs that start "
                'above the threshold reach it before training, so these steps say little.')
  return f'{head} {verdict}'


def _draw_curves(ax, report: Mapping, split: str) -> None:
  """On `ax`: each method's mean eval return on `split` with its shaded 95% CI vs env steps."""
  methods = list(report['methods'])
  for method, by_split in report['methods'].items():
    if split in by_split:
      c = by_split[split]['curve']
      color = method_color(method, methods)
      ax.plot(c['steps'], c['mean'], color=color, label=method)
      ax.fill_between(c['steps'], c['ci_low'], c['ci_high'], color=color, alpha=0.2)
  if split in report['random_return']:
    ax.axhline(_random_level(report, split), color='grey', ls='--', label='random')
  ax.set(xlabel='env steps per task', ylabel='eval return')


def plot_curves(report: Mapping, path: str) -> None:
  """One subplot per split: mean eval return with shaded 95% CI vs env steps, per method."""
  splits = _splits(report)
  fig = Figure(figsize=(5.5 * len(splits), 4))
  for ax, split in zip(fig.subplots(1, len(splits), squeeze=False)[0], splits, strict=True):
    _draw_curves(ax, report, split)
    ax.set_title(split)
    ax.legend(fontsize='small')
  fig.suptitle(f"{report['task']}: mean and 95% CI over tasks x {_count(report['seeds'], 'seed')} "
               f"({report['profile']} profile, {report['learner']}, {report['exploration']} "
               'exploration)', fontsize='medium')
  fig.tight_layout()
  _save_figure(fig, path)


def runs_figure(reports: Sequence[tuple[str, Mapping]]) -> Figure:
  """Many runs in one figure: a row per (label, report), a column per split, each panel
  drawn as in plot_curves; a split a run lacks is left blank. One legend for the figure."""
  if not reports:
    raise ValueError('runs_figure needs at least one (label, report) pair')
  run_splits = [_splits(report) for _, report in reports]
  splits = []
  for own in run_splits:
    splits += [s for s in own if s not in splits]
  fig = Figure(figsize=(4.5 * len(splits), 3.0 * len(reports)))
  axes = fig.subplots(len(reports), len(splits), squeeze=False)
  legend = {}
  for row, (label, report), own in zip(axes, reports, run_splits, strict=True):
    for ax, split in zip(row, splits, strict=True):
      if split not in own:
        ax.set_axis_off()
        continue
      _draw_curves(ax, report, split)
      ax.set_title(f'{label}: {split}', fontsize='medium')
      for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
        legend.setdefault(name, handle)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
  fig.legend(list(legend.values()), list(legend), loc='upper center', ncol=len(legend),
             fontsize='medium', frameon=False)
  return fig


def plot_runs(reports: Sequence[tuple[str, Mapping]], path: str) -> None:
  """runs_figure(reports) written to the PNG at `path` (summarize --plot); at 80 dpi, since a
  row per run makes it tall (8 runs x 2 splits: ~700 x 1,900 pixels)."""
  _save_figure(runs_figure(reports), path, dpi=80)


def _bar_group(ax, report: Mapping, key: str, split: str, x0: float, width: float,
               labels: bool) -> None:
  """Bars of report[...][split][key] mean with CI error bars, one per method, from x0."""
  methods = list(report['methods'])
  present = [m for m in methods if split in report['methods'][m]]
  for i, method in enumerate(present):
    s = report['methods'][method][split][key]
    ax.bar(x0 + i * width, s['mean'], width, color=method_color(method, methods),
           yerr=[[s['mean'] - s['ci_low']], [s['ci_high'] - s['mean']]], capsize=3, ecolor='0.45',
           label=method if labels else None)


def plot_final(report: Mapping, path: str) -> None:
  """Per split a group of bars: final return mean with 95% CI, random return dashed."""
  splits = _splits(report)
  fig = Figure(figsize=(5.5 * len(splits), 4))
  for ax, split in zip(fig.subplots(1, len(splits), squeeze=False)[0], splits, strict=True):
    _bar_group(ax, report, 'final_return', split, 0.0, 1.0, labels=True)
    if split in report['random_return']:
      ax.axhline(_random_level(report, split), color='grey', ls='--', label='random')
    ax.set(title=split, ylabel='final eval return', xticks=[])
    ax.legend(fontsize='small')
  _save_figure(fig, path)


def plot_normalized(report: Mapping, path: str) -> None:
  """Grouped bars of normalized final score (0 = random, 1 = oracle) per split and method."""
  if 'oracle' not in report['methods']:
    raise ValueError('normalized scores need the oracle method; run it or skip this plot')
  splits, n_methods = _splits(report), len(report['methods'])
  width = 0.8 / n_methods
  fig = Figure(figsize=(max(5.0, 1.0 + 0.6 * n_methods * len(splits)), 4))
  ax = fig.subplots()
  for j, split in enumerate(splits):
    _bar_group(ax, report, 'normalized_score', split, j - 0.4 + width / 2, width, labels=j == 0)
  ax.axhline(0.0, color='grey', ls='--', label='random')
  ax.axhline(1.0, color='black', ls=':', label='oracle level')
  ax.set(xticks=range(len(splits)), xticklabels=splits, ylabel='normalized final score')
  ax.legend(fontsize='small')
  _save_figure(fig, path)


def write_all(report: Mapping, run_dir: str) -> list[str]:
  """Write report.json, the plots and report.md into run_dir, each atomically; return paths."""
  os.makedirs(run_dir, exist_ok=True)
  paths = [os.path.join(run_dir, 'report.json')]
  write_json(paths[0], report)
  plots = [('curves.png', plot_curves), ('final_returns.png', plot_final)]
  if 'oracle' in report['methods']:
    plots.append(('normalized_scores.png', plot_normalized))
  for name, plot in plots:
    paths.append(os.path.join(run_dir, name))
    plot(report, paths[-1])
  paths.append(os.path.join(run_dir, 'report.md'))
  write_markdown(report, paths[-1], [name for name, _ in plots])
  return paths

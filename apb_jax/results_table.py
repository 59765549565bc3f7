"""Finished run directories -> one markdown table (the results tables of docs/results.md).

    rows = results_table.rows(['runs/cv_fresh', 'runs/cv_meta'])
    print(results_table.markdown(rows))

One row per (run, split, method), read from the run's report.json and
results/adapt_<method>_<split>.json, never from anywhere else (with the run's critic, whose
backbone it adapted and its adapter form):
    start     mean eval return before adaptation (step 0)
    final     mean final return (report.json's, by its rule: claims.final_evals) with its
              95% bootstrap interval
    gain      mean over runs of (final - start) with its 95% bootstrap interval, paired per
              run (the tasks of a split differ in scale, so the unpaired interval of the
              final return mostly measures the tasks' spread)
    learns    'yes' when the gain's interval lies above 0, else 'no'
    auc       mean eval return over adaptation (report.py)
    to_thr    median env steps to scratch's mean final return, with the fraction of runs
              that reached it ('> budget' when half or more never did)
    minutes   the stage's wall time (compile included)
"""

from __future__ import annotations

import os

import numpy as np

from apb_jax import files, stats


def _read(path: str) -> dict:
  return files.read_json(path, fix='finish the run (rerun its command) or leave it out')


def reports(run_dirs) -> list[tuple[str, dict]]:
  """(run_dir, its report.json) for each finished run directory in `run_dirs`, in order."""
  return [(run_dir, _read(os.path.join(run_dir, 'report.json'))) for run_dir in run_dirs]


def _critic(report) -> str:
  return report.get('critic', 'fresh')   # reports from before adapt.critic existed: fresh


def _backbone(report) -> str:
  """Whose meta-trained backbone the run adapted: 'own', or --config.backbone_from's family."""
  source = report.get('backbone_source')
  return 'own' if source is None or source['family'] == report['task'] else source['family']


def _adapter(report) -> str:
  return report.get('adapter', 'linear')   # reports from before policy.adapter: linear


def label(report) -> str:
  """A run's name in a figure: its family, and its critic, backbone and adapter form where
  they are not the defaults."""
  notes = [f'critic {_critic(report)}' if _critic(report) != 'fresh' else '',
           f'{_backbone(report)} backbone' if _backbone(report) != 'own' else '',
           f'{_adapter(report)} adapters' if _adapter(report) != 'linear' else '']
  notes = [n for n in notes if n]
  return report['task'] + (f" ({', '.join(notes)})" if notes else '')


def rows(run_dirs) -> list[dict]:
  """Rows for every method and split of each finished run directory in `run_dirs`."""
  return rows_of(reports(run_dirs))


def rows_of(run_reports) -> list[dict]:
  """rows(...) of already read `reports(run_dirs)`: [(run_dir, report)]."""
  out = []
  for run_dir, report in run_reports:
    for method, splits in report['methods'].items():
      for split, entry in splits.items():
        stage = _read(os.path.join(run_dir, 'results', f'adapt_{method}_{split}.json'))
        final, curve = entry['final_return'], entry['curve']
        threshold = entry.get('steps_to_threshold')
        curves = np.asarray(stage['curves'], dtype=np.float64)
        gain = stats.summarize(np.asarray(final['per_run']) - curves[:, 0])
        out.append({
            'task': report['task'],
            'critic': _critic(report), 'backbone': _backbone(report),
            'adapter': _adapter(report),
            'params': report.get('inherits', {}).get(method, {}).get('trainable_params'),
            'split': split, 'method': method,
            'runs': len(final['per_run']), 'start': curve['mean'][0], 'final': final['mean'],
            'final_ci': (final['ci_low'], final['ci_high']),
            'gain': (gain['mean'], gain['ci_low'], gain['ci_high']),
            'learns': gain['ci_low'] > 0, 'auc': entry['auc']['mean'],
            'to_threshold': None if threshold is None else (threshold['median'],
                                                            threshold['fraction_reached']),
            'minutes': stage['run_s'] / 60})
  return out


def _threshold(value) -> str:
  if value is None:
    return '-'
  median, fraction = value
  return (f'{median / 1000:.1f}k ({fraction:.0%})' if median is not None
          else f'> budget ({fraction:.0%})')


def _num(x: float) -> str:
  """Returns at a glance: one decimal from 10 up, else three significant digits."""
  return f'{x:.1f}' if abs(x) >= 10 else f'{x:.3g}'


def _label(value) -> str:
  """A column's value as text; '-' where a report predates the field."""
  return '-' if value is None else str(value)


def markdown(table_rows) -> str:
  """A markdown table of `rows(...)`; the backbone and adapter columns appear when some row
  has a backbone carried from another family or an adapter form other than linear, and
  with the adapter the trainable policy parameters of one run (`params`)."""
  extra = [k for k, default in (('backbone', 'own'), ('adapter', 'linear'))
           if any(r.get(k, default) != default for r in table_rows)]
  if 'adapter' in extra:
    extra.append('params')
  columns = ('family', 'critic', *extra, 'split', 'method', 'runs', 'start', 'final [95% CI]',
             'gain [95% CI]', 'learns', 'AUC', "steps to scratch's final (reached)", 'minutes')
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  for r in table_rows:
    lo, hi = r['final_ci']
    gain, gain_lo, gain_hi = r['gain']
    cells = (r['task'], r['critic'], *(_label(r.get(k)) for k in extra), r['split'],
             r['method'], str(r['runs']), _num(r['start']),
             f"{_num(r['final'])} [{_num(lo)}, {_num(hi)}]",
             f'{_num(gain)} [{_num(gain_lo)}, {_num(gain_hi)}]', 'yes' if r['learns'] else 'no',
             _num(r['auc']), _threshold(r['to_threshold']), f"{r['minutes']:.1f}")
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'

"""Markdown tables of finished runs (final return, learning, AUC, steps to threshold, time).

    python -m experiments.summarize runs/cheetah_vel_default runs/ant_goal_default \
        [--table=full|finals|runs] [--out=t.md] [--plot=curves.png]
    python -m experiments.summarize 'experiments/measured/runs/*_default_2026-12-0[45]'

Reads each run directory's report.json, config.json and results/ (apb_jax/results_table.py).
A quoted glob pattern names every directory it matches, sorted, so a table over a pattern
takes in a run kept later on the next regeneration (`make docs` regenerates the tables in
docs/ this way; experiments/make_docs.py). Tables (`--table`):
  full    a row per run, split and method (results_table.markdown; the default)
  dirs    the same with a first column naming each row's run directory
  finals  a row per run directory and split, a column per method: final return mean
          [95% CI]
  runs    a row per run directory: budgets, wall time, compile time, env steps/s,
          meta-training's train return, and the claims' verdicts (report.json)
`--plot` also draws every run's learning curves in one figure: a row per run, a column per
split.
"""

from __future__ import annotations

import glob
import os
import sys

from absl import app, flags

from apb_jax import files, report, results_table

TABLES = ('full', 'dirs', 'finals', 'runs')

_OUT = flags.DEFINE_string('out', None, 'also write the table to this file')
_PLOT = flags.DEFINE_string('plot', None, "also draw the runs' learning curves into this PNG")
_TABLE = flags.DEFINE_enum('table', 'full', TABLES,
                           'full: a row per run, split and method; dirs: the same, naming each '
                           "row's run directory; finals: a row per run and split, a column per "
                           'method; runs: a row per run (cost, claims)')


def run_dirs(args) -> list[str]:
  """Each argument as given, or, for a glob pattern, the directories it matches, sorted."""
  out = []
  for arg in args:
    if not glob.has_magic(arg):
      out.append(arg)
      continue
    matches = sorted(d for d in glob.glob(arg) if os.path.isdir(d))
    if not matches:
      raise files.RunFileError(f'no run directory matches {arg!r}; name finished run '
                               'directories, e.g. runs/cheetah_vel_default')
    out += matches
  return out


def _read(run_dir: str, *parts: str):
  path = os.path.join(run_dir, *parts)
  return files.read_json(path, fix='finish the run (rerun its command) or leave it out')


def _name(run_dir: str) -> str:
  return os.path.basename(os.path.normpath(run_dir))


def finals_markdown(table_rows) -> str:
  """A row per (run, split), a column per method (in first-seen order): final [95% CI]."""
  methods, cells, keys = [], {}, []
  for r in table_rows:
    key = (r['run'], r['split'])
    if key not in cells:
      cells[key] = {}
      keys.append(key)
    if r['method'] not in methods:
      methods.append(r['method'])
    lo, hi = r['final_ci']
    num = results_table._num   # the full table's number format
    cells[key][r['method']] = f"{num(r['final'])} [{num(lo)}, {num(hi)}]"
  lines = ['| run | split | ' + ' | '.join(methods) + ' |', '|' + '---|' * (2 + len(methods))]
  for key in keys:
    run_dir, split = key
    lines.append(f'| {_name(run_dir)} | {split} | '
                 + ' | '.join(cells[key].get(m, '-') for m in methods) + ' |')
  return '\n'.join(lines) + '\n'


def _meta_return(run_dir: str) -> str:
  """Meta-training's mean train-task return at its first and last evaluation, or '-' where
  the run did not meta-train (it reused --config.backbone_from) or distilled (meta.method bc)."""
  path = os.path.join(run_dir, 'results', 'meta_train.json')
  if not os.path.exists(path):
    return '-'
  curves = _read(run_dir, 'results', 'meta_train.json').get('curves')
  if not curves:
    return '-'
  first = sum(c[0] for c in curves) / len(curves)
  last = sum(c[-1] for c in curves) / len(curves)
  num = results_table._num
  return f'{num(first)} -> {num(last)}'


def _claims(rep) -> str:
  """'1 apb vs scratch: -22.6, insufficient; 2 ...' from report.json's claims."""
  out = []
  for c in rep.get('claims', []):
    diff = c.get('final_return_diff', {}).get('mean')
    value = '' if diff is None else f'{results_table._num(diff)}, '
    out.append(f"{c['claim']} {' vs '.join(c['methods'])} ({c['split']}): {value}"
               f"{c['verdict']}")
  return '; '.join(out) or '-'


def runs_markdown(run_reports) -> str:
  """A row per run: what it ran, what it cost, what meta-training did, what the claims say."""
  columns = ('run', 'profile', 'learner', 'meta tasks x steps', 'adapt tasks x seeds x steps',
             'wall min', 'compile s', 'env steps/s', "meta-training's train return",
             'claims (final A - B, verdict)')
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  for run_dir, rep in run_reports:
    config = _read(run_dir, 'config.json')
    meta, adapt = config['meta'], config['adapt']
    meta_cell = '-' if _meta_return(run_dir) == '-' else (
        f"{meta['num_tasks']} x {meta['total_steps']:,}")
    timing = rep['timing']
    cells = (_name(run_dir), rep['profile'], rep['learner'], meta_cell,
             f"{adapt['num_tasks']} x {adapt['seeds']} x {adapt['total_steps']:,}",
             f"{timing['total_s'] / 60:.1f}", f"{timing['compile_s']:.0f}",
             f"{timing['env_steps_per_s']:.0f}", _meta_return(run_dir), _claims(rep))
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def render(run_reports, table: str = 'full') -> str:
  """The markdown table `table` (one of TABLES) of `results_table.reports(run_dirs)`."""
  if table not in TABLES:
    raise ValueError(f'unknown table {table!r}; choose one of {list(TABLES)}')
  if table == 'runs':
    return runs_markdown(run_reports)
  rows = results_table.rows_of(run_reports)
  if table == 'full':
    return results_table.markdown(rows)
  runs = [run_dir for run_dir, rep in run_reports   # rows_of: each run's rows, in order
          for splits in rep['methods'].values() for _ in splits]
  if table == 'finals':
    return finals_markdown([dict(row, run=run) for row, run in zip(rows, runs, strict=True)])
  header, rule, *lines = results_table.markdown(rows).splitlines()
  return '\n'.join(['| run ' + header, '|---' + rule]
                    + [f'| {_name(run)} ' + line for run, line in zip(runs, lines, strict=True)]
                    ) + '\n'


def table_of(args, table: str = 'full', plot: str | None = None) -> str:
  """The markdown `table` over run directories or glob patterns `args`; `plot`: also draw
  the runs' learning curves into this PNG."""
  run_reports = results_table.reports(run_dirs(args))
  text = render(run_reports, table)
  if plot:
    report.plot_runs([(results_table.label(r), r) for _, r in run_reports], plot)
  return text


def main(argv):
  if len(argv) < 2:
    sys.exit('error: name at least one finished run directory, e.g. '
             'python -m experiments.summarize runs/cheetah_vel_default')
  try:
    table = table_of(argv[1:], _TABLE.value, _PLOT.value)
  except files.RunFileError as e:
    sys.exit(f'error: {e}')
  print(table, end='')
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      f.write(table)


if __name__ == '__main__':
  app.run(main)

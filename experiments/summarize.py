"""One markdown table of finished runs (final return, learning, AUC, steps to threshold, time).

    python -m experiments.summarize runs/cheetah_vel_default runs/ant_goal_default \
        [--out=t.md] [--plot=curves.png]

Reads each run directory's report.json and results/ (apb_jax/results_table.py). `--plot`
also draws every run's learning curves in one figure: a row per run, a column per split.
"""

from __future__ import annotations

import sys

from absl import app, flags

from apb_jax import files, report, results_table

_OUT = flags.DEFINE_string('out', None, 'also write the table to this file')
_PLOT = flags.DEFINE_string('plot', None, "also draw the runs' learning curves into this PNG")


def main(argv):
  if len(argv) < 2:
    sys.exit('error: name at least one finished run directory, e.g. '
             'python -m experiments.summarize runs/cheetah_vel_default')
  try:
    run_reports = results_table.reports(argv[1:])
    table = results_table.markdown(results_table.rows_of(run_reports))
    if _PLOT.value:
      report.plot_runs([(results_table.label(r), r) for _, r in run_reports], _PLOT.value)
  except files.RunFileError as e:
    sys.exit(f'error: {e}')
  print(table, end='')
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      f.write(table)


if __name__ == '__main__':
  app.run(main)

"""Keeps a finished run's results in the repository: its JSON, report and figure, not its
checkpoints (a default run's are ~100 MB), so `make docs` can tabulate it.

    python -m experiments.keep runs/hopper_params_default [--name=hopper_params_default]
        [--backbone] [--into=experiments/measured/runs]

Copies config.json, tasks.json, versions.json, report.json, report.md, curves.png and results/
into `<into>/<name>_<today>` (name: the run directory's own name). `--backbone` also keeps
checkpoints/backbone, the meta-trained backbone that a later run reads with
--config.backbone_from. The run must be finished (its report.json written), and an existing
kept directory is never overwritten.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys

from absl import app, flags

from apb_jax import files

KEPT = ('config.json', 'tasks.json', 'versions.json', 'report.json', 'report.md',
        'curves.png', 'results')
BACKBONE = os.path.join('checkpoints', 'backbone')

_NAME = flags.DEFINE_string('name', None, "the kept directory's name before its date "
                            "(default: the run directory's name)")
_INTO = flags.DEFINE_string('into', 'experiments/measured/runs', 'where kept runs live')
_BACKBONE = flags.DEFINE_bool('backbone', False, 'also keep checkpoints/backbone, for a later '
                              "run's --config.backbone_from")


def keep(run_dir: str, into: str, name: str | None = None, backbone: bool = False,
         today: datetime.date | None = None) -> str:
  """Copies `run_dir`'s kept files into `into/<name>_<today>`; returns that directory."""
  if not os.path.isfile(os.path.join(run_dir, 'report.json')):
    raise files.RunFileError(f'{run_dir} has no report.json: finish the run (rerun its '
                             'command) before keeping it')
  if backbone and not os.path.isdir(os.path.join(run_dir, BACKBONE)):
    raise files.RunFileError(f'{run_dir} has no {BACKBONE}: leave out --backbone, or keep the '
                             'run that meta-trained it')
  name = name or os.path.basename(os.path.normpath(run_dir))
  dest = os.path.join(into, f'{name}_{(today or datetime.date.today()).isoformat()}')
  if os.path.exists(dest):
    raise files.RunFileError(f'{dest} already exists: pass another --name, or remove it first')
  os.makedirs(dest)
  for part in KEPT + ((BACKBONE,) if backbone else ()):
    src = os.path.join(run_dir, part)
    if os.path.isdir(src):
      shutil.copytree(src, os.path.join(dest, part))
    elif os.path.isfile(src):
      shutil.copy2(src, os.path.join(dest, part))
  return dest


def main(argv) -> None:
  if len(argv) != 2:
    raise app.UsageError('name one finished run directory, e.g. '
                         'python -m experiments.keep runs/hopper_params_default')
  try:
    dest = keep(argv[1], _INTO.value, _NAME.value, _BACKBONE.value)
  except files.RunFileError as e:
    sys.exit(f'error: {e}')
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(dest) for f in fs)
  print(f'kept {argv[1]} in {dest} ({size / 2**20:.1f} MiB)')


if __name__ == '__main__':
  app.run(main)

"""experiments/keep.py: a finished run's results kept without its checkpoints."""

from __future__ import annotations

import datetime
import os

import pytest

from apb_jax import files
from experiments import keep

DAY = datetime.date(2026, 12, 6)


def _run(tmp_path, finished: bool = True) -> str:
  run = tmp_path / 'runs' / 'hopper_params_default'
  for part in ('config.json', 'results/meta_train.json', 'checkpoints/backbone/weights',
               'checkpoints/adapt_apb_test_id/state') + (('report.json',) if finished else ()):
    (run / part).parent.mkdir(parents=True, exist_ok=True)
    (run / part).write_text(part)
  return str(run)


def _tree(path) -> set[str]:
  return {os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs}


def test_keep_copies_results_and_only_the_backbone_checkpoint_asked_for(tmp_path):
  run, into = _run(tmp_path), str(tmp_path / 'kept')
  plain = keep.keep(run, into, today=DAY)
  assert plain == os.path.join(into, 'hopper_params_default_2026-12-06')
  assert _tree(plain) == {'config.json', 'report.json', 'results/meta_train.json'}
  with_backbone = keep.keep(run, into, name='hp', backbone=True, today=DAY)
  assert _tree(with_backbone) == {'config.json', 'report.json', 'results/meta_train.json',
                                  'checkpoints/backbone/weights'}
  assert open(os.path.join(with_backbone, 'checkpoints/backbone/weights')).read() == \
      'checkpoints/backbone/weights'


def test_keep_refuses_an_unfinished_run_and_an_existing_kept_directory(tmp_path):
  into = str(tmp_path / 'kept')
  with pytest.raises(files.RunFileError, match='no report.json: finish the run'):
    keep.keep(_run(tmp_path, finished=False), into, today=DAY)
  assert not os.path.exists(into)
  run = _run(tmp_path)
  keep.keep(run, into, today=DAY)
  with pytest.raises(files.RunFileError, match='already exists: pass another --name'):
    keep.keep(run, into, today=DAY)

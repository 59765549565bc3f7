"""The API example runs as a user would run it (slow: make test-all; ~3-5 min on 2 cores)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_adapt_new_task_example_transfers_the_kept_backbone_and_plots(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'examples.adapt_new_task',
                        f'--workdir={tmp_path}'], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=1800)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'backbone meta-trained on 8 hoppers' in out.stdout, out.stdout
  start = {m: float(s) for m, s in re.findall(
      r'^(\w+): trains [\d,]+ params; eval return (-?[\d.]+) -> ', out.stdout, re.M)}
  assert set(start) == {'apb_warm', 'apb', 'scratch'}, out.stdout
  assert start['apb_warm'] > start['scratch'] + 10, out.stdout   # the backbone's competence
  assert (tmp_path / 'adapt_new_task.png').stat().st_size > 10_000

"""The two-call Python API (apb_jax/api.py) on the probe family: meta_train, then adapt to
given tasks, on the launcher's own stages; the adapted policy acts as trained."""

import json

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import api, checkpoint
from test_experiment import PROBE, _run, probe_config


@pytest.fixture(scope='module')
def meta(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('api_meta')
  return workdir, api.meta_train(probe_config(), str(workdir), family=PROBE,
                                 show_progress=False)


def test_meta_train_returns_what_the_run_directory_saved(meta):
  workdir, out = meta
  saved = checkpoint.restore_params(str(workdir / 'checkpoints' / 'backbone'))
  chex.assert_trees_all_equal(out.backbone, saved['backbone'])
  chex.assert_trees_all_equal(out.adapter_origin, saved['adapter_origin'])
  assert out.curves.shape == (3, len(out.steps)) and out.steps[0] == 0   # 3 train tasks
  again = api.meta_train(probe_config(), str(workdir), family=PROBE, show_progress=False)
  chex.assert_trees_all_equal(again.backbone, out.backbone)              # read back, not rerun


def test_adapt_to_given_tasks_solves_them_and_acts_as_trained(meta, tmp_path):
  workdir, _ = meta
  targets = jnp.array([-0.5, 0.3, 0.55])
  out = api.adapt(probe_config(), str(tmp_path), method='apb', tasks={'target': targets},
                  backbone_from=str(workdir), family=PROBE, show_progress=False)
  assert out.curves.shape == (6, 3) and list(out.steps) == [0, 2048, 4096]   # 3 tasks x 2 seeds
  assert out.curves[:, -1].min() > -0.05                                    # the probe solved
  chex.assert_trees_all_equal(out.params['backbone'], meta[1].backbone)     # frozen
  actions = np.array([api.act(out, jnp.zeros(1), run=r)[0] for r in range(6)])
  np.testing.assert_allclose(actions, np.repeat(targets, 2), atol=0.1)      # a = its target
  for r in range(6):     # the action act() gives earns the return the stage evaluated
    np.testing.assert_allclose(-(actions[r] - targets[r // 2]) ** 2, out.curves[r, -1],
                               atol=1e-4)


def test_adapt_is_the_launchers_stage(tmp_path):
  """Without given tasks, adapt runs the stage `make experiment` runs (same tasks, keys and
  program): scratch's curves equal the launcher's bit for bit, its network trained per run."""
  alone = api.adapt(probe_config(), str(tmp_path / 'a'), method='scratch', family=PROBE,
                    show_progress=False)
  _run(probe_config(methods='scratch', splits='test_id'), tmp_path / 'b')
  full = json.loads((tmp_path / 'b' / 'results' / 'adapt_scratch_test_id.json').read_text())
  np.testing.assert_array_equal(alone.curves, np.asarray(full['curves']))
  assert alone.params['backbone']['dense_0']['kernel'].shape == (4, 16, 16)   # [runs, ...]
  np.testing.assert_allclose(api.act(alone, jnp.zeros(1), run=1)[0], 0.0, atol=0.7)

"""What meta-training hands to adaptation (inherit.py): one adapter origin, the train adapters'
mean for apb_warm, the merged observation statistics; and the zero-shot figures of the report."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import checkpoint, experiment, files, inherit, policy
from apb_jax.learners import normalizer
from apb_jax.run_config import policy_config
from apb_jax.tasks.base import TaskFamily, tile
from apb_jax.tasks.probes import ProbeEnv
from test_experiment import probe_config

TARGET = 0.5


def _same_task_family():
  """The action probe where every task of every split is target 0.5: the train tasks are the
  test task, so what meta-training learned is exactly what a test run needs."""
  def sample(rng, n):
    del rng
    return {'target': jnp.full((n,), TARGET)}
  return TaskFamily(name='probe_same_task', env=ProbeEnv('action'),
                    samplers={s: sample for s in ('train', 'test_id', 'test_ood')},
                    description={s: 'target 0.5' for s in ('train', 'test_id', 'test_ood')})


FAMILY = _same_task_family()
METHODS = ('apb', 'apb_warm', 'apb_randominit', 'scratch')


def _config(**changes):
  return probe_config(**{'methods': ','.join(METHODS), 'splits': 'test_id',
                         'adapt.num_tasks': 2, 'adapt.seeds': 1, 'adapt.total_steps': 2048,
                         'adapt.eval_every': 2048, **changes})


@pytest.fixture(scope='module')
def same_task_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('same_task')
  exp = experiment.Experiment(_config(), str(workdir), show_progress=False, family=FAMILY)
  return workdir, exp, exp.run()


def _probe_return(backbone, adapters, config):
  """The one-step action probe's return -(tanh(loc) - 0.5)^2 at obs 0 (deterministic)."""
  action = policy.apply(backbone, adapters, jnp.zeros((1,)), config).action[0]
  return float(-jnp.square(action - TARGET))


def test_every_run_starts_from_the_origin_and_apb_warm_from_the_train_mean(same_task_run):
  workdir, exp, _ = same_task_run
  saved = inherit.load(str(workdir), inherit.ACTOR)
  origin = exp.adapter_origin()
  chex.assert_trees_all_equal(saved['adapter_origin'], origin)
  train = checkpoint.restore_params(str(workdir / 'checkpoints' / 'meta_adapters'))
  for method in ('apb', 'apb_randominit', 'scratch'):
    params = exp.start_params(method, 'test_id', 3)
    chex.assert_trees_all_equal(params['adapters'], tile(origin, 3))
  warm = exp.start_params('apb_warm', 'test_id', 3)
  chex.assert_trees_all_close(warm['adapters'], tile(
      jax.tree.map(lambda x: np.mean(x, axis=0), train), 3), rtol=1e-6, atol=1e-7)
  # the meta-backbone methods inherit the merged statistics; the random-backbone ones do not
  assert 'obs_stats' in exp.start_params('apb', 'test_id', 1)
  assert 'obs_stats' not in exp.start_params('apb_randominit', 'test_id', 1)
  assert 'obs_stats' not in exp.start_params('scratch', 'test_id', 1)


def test_apb_warm_starts_at_the_meta_trained_return_and_apb_at_the_origins(same_task_run):
  """Zero-shot: on the train task itself, apb_warm's start is meta-training's final return
  (its adapters are the train adapters' mean), apb's the meta backbone's under the origin."""
  workdir, exp, out = same_task_run
  config = policy_config(exp.config)
  saved = inherit.load(str(workdir), inherit.ACTOR)
  methods = out['methods']
  meta_final = exp.meta_final()
  assert meta_final > -0.02                        # meta-training solved the one task
  warm = methods['apb_warm']['test_id']['start']['per_run']
  np.testing.assert_allclose(warm, _probe_return(saved['backbone'], saved['adapter_mean'],
                                                 config), rtol=1e-5, atol=1e-6)
  assert min(warm) > -0.02 and abs(np.mean(warm) - meta_final) < 0.02
  apb = methods['apb']['test_id']['start']['per_run']
  np.testing.assert_allclose(apb, _probe_return(saved['backbone'], saved['adapter_origin'],
                                                config), rtol=1e-5, atol=1e-6)
  transfer = methods['apb_warm']['test_id']['transfer']
  assert transfer['meta_final'] == pytest.approx(meta_final)
  assert transfer['start_to_meta_final'] is None   # a cost (meta_final <= 0): no ratio
  assert 'transfer' not in methods['apb_randominit']['test_id']
  assert out['inherits']['apb_warm']['adapters'] == "meta-trained adapters' mean"
  scratch = dict(out['inherits']['scratch'])
  assert scratch.pop('trainable_params') > out['inherits']['apb']['trainable_params'] > 0
  assert scratch == {
      'backbone': "random (meta-training's start)", 'adapters': 'adapter origin',
      'obs_stats': 'fresh', 'critic': 'fresh MLP'}
  assert 'Zero-shot' not in (workdir / 'report.md').read_text()   # no ratio of costs
  assert '| apb_warm | meta-trained |' in (workdir / 'report.md').read_text()


def test_independent_adapters_reproduce_the_draws_per_run_and_refuse_apb_warm(tmp_path):
  exp = experiment.Experiment(_config(methods='apb_randominit,scratch', **{
      'adapt.adapters': 'independent', 'adapt.obs_stats': 'fresh'}), str(tmp_path),
      show_progress=False, family=FAMILY)
  assert exp.adapter_origin() is None
  a = exp.start_params('scratch', 'test_id', 2)['adapters']
  b = exp.start_params('apb_randominit', 'test_id', 2)['adapters']
  chex.assert_trees_all_equal(a, b)                 # common random numbers across methods
  assert not np.allclose(a['in']['kernel'][0], a['in']['kernel'][1])   # a draw per run
  with pytest.raises(ValueError,
                     match='apb_warm starts from the mean .*--config.adapt.adapters=origin'):
    experiment.Experiment(_config(**{'adapt.adapters': 'independent'}), str(tmp_path / 'b'),
                          show_progress=False, family=FAMILY)


def test_merged_statistics_equal_those_of_all_the_data_at_once():
  data = jax.random.normal(jax.random.PRNGKey(0), (3, 50, 4)) * jnp.arange(1, 5) + 2.0
  per_task = jax.vmap(lambda x: normalizer.update(normalizer.init(4), x))(data)
  merged = normalizer.merge(per_task)
  whole = normalizer.update(normalizer.init(4), data.reshape(-1, 4))
  chex.assert_trees_all_close(merged, whole, rtol=1e-5, atol=1e-4)


def test_a_backbone_saved_before_the_origin_stops_with_the_fix(same_task_run, tmp_path):
  """--config.backbone_from of a run meta-trained before issue 29 (its checkpoint holds the
  backbone alone): one line naming the flags that keep that protocol."""
  workdir, _, _ = same_task_run
  old = tmp_path / 'old'
  checkpoint.save_params(str(old / 'checkpoints' / 'backbone'),
                         {'backbone': inherit.load(str(workdir), inherit.ACTOR)['backbone']})
  exp = experiment.Experiment(_config(methods='apb', backbone_from=str(old)),
                              str(tmp_path / 'new'), show_progress=False, family=FAMILY)
  with pytest.raises(files.RunFileError, match='holds no adapter_origin .* pass '
                     '--config.adapt.adapters=independent --config.adapt.obs_stats=fresh'):
    exp.run()

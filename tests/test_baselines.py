"""Meta-RL baselines in the pipeline: every baseline's stages report, checkpoint, resume after a
stop to the same result, and bad settings stop at once with the fix."""

import os

import chex
import numpy as np
import pytest

from apb_jax import checkpoint, experiment, files
from apb_jax.tasks.probes import make_probe
from tests.test_experiment import probe_config

BANDIT = make_probe('bandit')
BASELINES = ('rl2', 'pearl', 'maml')


def _config(**changes):
  settings = {'methods': 'apb_randominit,rl2,pearl,maml', 'learner': 'ppo', 'ppo.num_envs': 16,
              'ppo.unroll_length': 8, 'ppo.epochs': 2, 'ppo.num_minibatches': 2, 'ppo.lr': 3e-3,
              'ppo.gamma': 0.9, 'ppo.normalize_obs': False, 'ppo.value_widths': (16, 16),
              'baselines.rl2.core_size': 8, 'baselines.maml.num_envs': 16,
              'baselines.maml.normalize_obs': False, 'baselines.pearl.context_size': 8,
              'baselines.pearl.encoder_widths': (16, 16), 'meta.total_steps': 2048,
              'meta.eval_every': 1024,
              'adapt.total_steps': 1024, 'adapt.eval_every': 512}
  return probe_config(**{**settings, **changes})


class _Stop(Exception):
  pass


# Every meta stage, and the adaptation calls (both splits stacked), which run in chunks.
STOP_IN = ('meta_rl2', 'adapt_rl2_test_id+1', 'meta_pearl', 'adapt_pearl_test_id+1', 'meta_maml',
           'adapt_maml_test_id+1')


def test_baseline_stages_report_and_resume_after_a_stop(tmp_path, monkeypatch):
  config = _config()
  full = experiment.run(config, str(tmp_path / 'full'), show_progress=False, family=BANDIT)
  assert set(full['methods']) == {'apb_randominit', *BASELINES}
  for name in BASELINES:
    result = files.read_json(str(tmp_path / 'full' / 'results' / f'adapt_{name}_test_id.json'))
    chex.assert_shape(np.asarray(result['curves']), (4, 3))        # 2 tasks x 2 seeds
    meta = files.read_json(str(tmp_path / 'full' / 'results' / f'meta_{name}.json'))
    assert meta['env_steps'] == 3 * 2048                             # every train task's steps
  rl2 = files.read_json(str(tmp_path / 'full' / 'results' / 'adapt_rl2_test_id.json'))
  assert rl2['env_steps'] == 4 * 2                        # a whole trial: 2 one-step episodes
  maml = files.read_json(str(tmp_path / 'full' / 'results' / 'adapt_maml_test_id.json'))
  assert maml['env_steps'] == 4 * 1024                    # 64 inner steps of 16 env steps
  claims = {c['claim']: c for c in full['claims']}
  assert claims[2]['methods'] == ['apb_randominit', 'scratch']     # scratch did not run here
  assert claims[2]['verdict'] == 'not measured'

  save = checkpoint.StageCheckpoints.save
  stops = []

  def save_then_stop(self, chunks_done, *args, **kwargs):
    save(self, chunks_done, *args, **kwargs)
    stage = os.path.basename(self.directory)
    if stage in STOP_IN and stage not in stops:   # stop once inside each of these stages
      stops.append(stage)
      raise _Stop

  monkeypatch.setattr(checkpoint.StageCheckpoints, 'save', save_then_stop)
  for _ in STOP_IN:
    with pytest.raises(_Stop):
      experiment.run(config, str(tmp_path / 'stopped'), show_progress=False, family=BANDIT)
  assert stops == list(STOP_IN)
  resumed = experiment.run(config, str(tmp_path / 'stopped'), show_progress=False, family=BANDIT)
  for name in BASELINES:
    for split in ('test_id', 'test_ood'):
      np.testing.assert_array_equal(resumed['methods'][name][split]['curve']['mean'],
                                    full['methods'][name][split]['curve']['mean'])
  # both splits in one call equal one call per split (XLA:CPU rounds per batch size)
  alone = experiment.run(_config(**{'adapt.stack': False}), str(tmp_path / 'alone'),
                         show_progress=False, family=BANDIT)
  for name in BASELINES:
    stacked = files.read_json(str(tmp_path / 'full' / 'results' / f'adapt_{name}_test_ood.json'))
    assert stacked['call']['stages'] == [f'adapt_{name}_test_id', f'adapt_{name}_test_ood']
    chex.assert_trees_all_close(alone['methods'][name], full['methods'][name],
                                rtol=1e-4, atol=1e-4)


def test_bad_baseline_settings_stop_at_once_with_the_fix(tmp_path):
  for bad, message in (({'baselines.rl2.core_size': 0}, 'core_size=0 must be an int >= 1'),
                       ({'baselines.rl2.trial_episodes': 0}, 'trial_episodes=0 must be an int >= 1'),
                       ({'baselines.meta_factor': 0}, 'meta_factor=0 must be an int >= 1'),
                       ({'baselines.maml.num_envs': 600}, 'lower --config.baselines.maml.num_envs'),
                       ({'baselines.maml.inner_lr': 0.0}, 'inner_lr=0.0 must be a float > 0'),
                       ({'baselines.pearl.latent_size': 0}, 'latent_size=0 must be an int >= 1'),
                       ({'methods': 'apb,rl3'}, '--config.methods=apb,rl3 must be')):
    with pytest.raises(ValueError, match=message) as info:
      experiment.Experiment(_config(**bad), str(tmp_path / 'bad'), family=BANDIT)
    assert '\n' not in str(info.value) and not os.path.exists(tmp_path / 'bad')

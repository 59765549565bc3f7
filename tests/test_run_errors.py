"""Bad settings and damaged run directories stop `experiments.run` with one line that names the fix.

Each case runs the launcher's own code in-process (`run.launch`, what `main` runs after
absl's parsing) on cheetah_vel's smoke profile and checks what a user sees: exit status 1
(a `SystemExit` whose code is the message), one line starting `error: ` and nothing else on
stderr (so no traceback), and the run directory byte-for-byte as it was. Validation runs
before jax compiles anything, so the cases are fast. `test_experiment` runs the real
launcher process on a few of them, and on mistakes that absl's parsing catches.
"""

import json
import os
import shutil

import chex
import jax
import numpy as np
import pytest

from apb_jax import checkpoint, config_fields, experiment, schema
from experiments import run
from conftest import set_fields
from experiments.configs import common

def smoke_config(**changes):
  """cheetah_vel's smoke config as the launcher builds it, with `changes` ({'rl.gamma': 2.0})."""
  c = common.get_config('cheetah_vel', 'smoke')
  c.methods = 'apb,scratch'
  return set_fields(c, changes)


def _ours(err: str) -> str:
  """stderr less XLA's own C++ log lines about loading a persistent-cache entry on a CPU
  whose tuning flags (+prefer-no-gather, seen on AVX-512 Intel hosts) it does not list among
  the host's features: XLA logs them at ERROR on every cache hit, whatever our code does."""
  return ''.join(line for line in err.splitlines(keepends=True)
                 if 'cpu_aot_loader.cc' not in line)


def _stop_line(capfd, workdir, **changes) -> str:
  """The launcher's one-line stop (`run.launch`, what `main` runs after absl's parsing),
  asserting exit status 1 and nothing else on stderr."""
  capfd.readouterr()
  with pytest.raises(SystemExit) as info:
    run.launch(smoke_config(**changes), str(workdir), show_progress=False)
  message = info.value.code
  assert isinstance(message, str), message          # sys.exit(str): exit status 1
  _, err = capfd.readouterr()
  assert _ours(err) == '', err                      # nothing else on stderr: no traceback
  assert message.startswith('error: ') and '\n' not in message, message
  return message


def _snapshot(path) -> dict:
  """{relative path: bytes, or None for a directory} of everything under `path`."""
  out = {}
  for root, dirs, names in os.walk(path):
    for d in dirs:
      out[os.path.relpath(os.path.join(root, d), path)] = None
    for n in names:
      with open(os.path.join(root, n), 'rb') as f:
        out[os.path.relpath(os.path.join(root, n), path)] = f.read()
  return out


BAD_SETTINGS = [
    ({'rl.num_envs': 0}, '--config.rl.num_envs=0 must be an int >= 1; e.g. --config.rl.num_envs=16'),
    ({'rl.actor_lr': -1.0}, '--config.rl.actor_lr=-1.0 must be a float > 0; e.g.'),
    ({'rl.critic_lr': 0.0}, '--config.rl.critic_lr=0.0 must be a float > 0'),
    ({'rl.gamma': 1.5}, '--config.rl.gamma=1.5 must be a float in [0, 1]'),
    ({'rl.tau': 0.0}, '--config.rl.tau=0.0 must be a float in (0, 1]'),
    ({'rl.batch_size': 0}, '--config.rl.batch_size=0 must be an int >= 1'),
    ({'rl.buffer_size': 0}, '--config.rl.buffer_size=0 must be an int >= 1'),
    ({'rl.warmup_steps': -8}, '--config.rl.warmup_steps=-8 must be an int >= 0'),
    ({'rl.reward_scale': float('nan')}, '--config.rl.reward_scale=nan must be a float > 0'),
    ({'ppo.clip_eps': -0.1}, '--config.ppo.clip_eps=-0.1 must be a float > 0'),
    ({'ppo.gae_lambda': 2.0}, '--config.ppo.gae_lambda=2.0 must be a float in [0, 1]'),
    ({'ppo.epochs': 0}, '--config.ppo.epochs=0 must be an int >= 1'),
    ({'policy.widths': (0, 32)}, '--config.policy.widths=(0, 32) must be a non-empty tuple'),
    ({'policy.widths': ()}, '--config.policy.widths=() must be a non-empty tuple of ints'),
    ({'policy.activation': 'sigmoid'}, '--config.policy.activation=sigmoid must be one of'),
    ({'policy.core_size': -1}, '--config.policy.core_size=-1 must be an int >= 0'),
    ({'policy.init_scale': 0.001}, 'error: policy (--config.policy.*): PolicyConfig.init_scale=0.001'
     ' must be 0 (the default init) or > min_scale=0.001; e.g. init_scale=0.1.'),
    ({'learner': 'a2c'}, "--config.learner=a2c must be one of ['sac', 'td3', 'ppo']"),
    ({'exploration': 'curiosity'}, "--config.exploration=curiosity must be one of ['action',"),
    ({'methods': 'apb,mamll'}, '--config.methods=apb,mamll must be a comma-separated list of '
     "distinct names from ['apb', 'apb_warm', 'apb_randominit', 'scratch', 'finetune', 'oracle',"),
    ({'methods': 'apb,apb'}, '--config.methods=apb,apb must be a comma-separated list'),
    ({'methods': ''}, '--config.methods= must be a comma-separated list'),
    ({'splits': 'test_id,val'}, '--config.splits=test_id,val must be a comma-separated list'),
    ({'meta.method': 'maml'}, "--config.meta.method=maml must be one of ['rl', 'bc']"),
    ({'meta.total_steps': 0}, '--config.meta.total_steps=0 must be an int >= 1'),
    ({'meta.distill.behaviour_noise': -0.1}, 'distill.behaviour_noise=-0.1 must be a float >= 0'),
    ({'adapt.seeds': 0}, '--config.adapt.seeds=0 must be an int >= 1; e.g. --config.adapt.seeds=2'),
    ({'oracle_factor': 0}, '--config.oracle_factor=0 must be an int >= 1'),
    ({'seed': -1}, '--config.seed=-1 must be an int >= 0'),
    ({'baselines.pearl.kl_weight': -1.0}, 'pearl.kl_weight=-1.0 must be a float >= 0'),
    ({'baselines.maml.gamma': 1.1}, 'maml.gamma=1.1 must be a float in [0, 1]'),
    ({'baselines.rl2.core_size': 0}, 'rl2.core_size=0 must be an int >= 1'),
    ({'task': 'cheetah_fly'}, "unknown task family 'cheetah_fly'; choose one of"),
    # Rules that tie fields together: the stage and the groups to change.
    ({'adapt.total_steps': 1000}, 'error: adaptation (--config.adapt.*, --config.rl.*): '
     'total_steps=1000 must be a positive multiple of eval_every=256; change one of them.'),
    ({'adapt.total_steps': 1028}, 'error: adaptation (--config.adapt.*, --config.rl.*): '
     'total_steps=1028 must be a non-negative multiple of num_envs=8; round it to one.'),
    ({'ppo.num_minibatches': 3, 'learner': 'ppo'}, 'error: meta-training (--config.meta.*, '
     '--config.ppo.*): num_envs=8 must be a multiple of num_minibatches=3'),
    ({'backbone_from': '/nonexistent'}, 'holds no checkpoints/backbone/'),
    ({'adapt.critic': 'pretrained'}, "--config.adapt.critic=pretrained must be one of ['fresh',"),
    ({'adapt.critic': 'meta', 'learner': 'ppo'}, "--config.adapt.critic=meta transfers the twin "
     "Q critic of sac/td3; PPO's value function is always fresh: use --config.adapt.critic=fresh"),
    ({'adapt.critic': 'meta', 'meta.method': 'bc'}, 'needs a meta-trained critic, which only '
     '--config.meta.method=rl trains'),
    ({'adapt.critic': 'meta', 'rl.critic_widths': (64,)}, 'needs mode != \'tied\' and '
     'critic_widths of >= 2 widths'),
]


@pytest.mark.parametrize('changes,message', BAD_SETTINGS,
                         ids=[','.join(f'{k}={v}' for k, v in c.items()) for c, _ in BAD_SETTINGS])
def test_bad_setting_stops_in_one_line_naming_the_fix(changes, message, capfd, tmp_path):
  line = _stop_line(capfd, tmp_path / 'run', **changes)
  assert message in line, line
  assert not os.path.exists(tmp_path / 'run')       # nothing written


def test_every_violation_is_reported_one_line_each():
  config = common.get_config('cheetah_vel', 'smoke')
  config.rl.num_envs, config.ppo.lr, config.adapt.seeds = 0, -1.0, 0
  config.rl.typo = 3
  lines = schema.problems(config, config_fields.FIELDS)
  assert sorted(line.split('=')[0].split(' ')[0] for line in lines) == [
      '--config.adapt.seeds', '--config.ppo.lr', '--config.rl.num_envs', '--config.rl.typo']
  assert '--config.rl.typo is not a config field' in ' '.join(lines)
  with pytest.raises(ValueError) as info:
    experiment.validate(config)
  assert str(info.value).count('\nerror: ') == 3


def test_every_field_of_every_profile_is_declared_and_valid():
  for profile in config_fields.PROFILES:
    assert schema.problems(common.get_config('cheetah_vel', profile), config_fields.FIELDS) == []
  for name, field in _leaves(config_fields.FIELDS):
    assert field.rule(field.default) is None, name


def _leaves(fields, prefix=''):
  for name, field in fields.items():
    if isinstance(field, dict):
      yield from _leaves(field, f'{prefix}{name}.')
    else:
      yield prefix + name, field


# -- damaged run directories -----------------------------------------------------------------
@pytest.fixture(scope='module')
def pristine(tmp_path_factory):
  """A run directory as the launcher prepares it (config, tasks, versions), nothing trained."""
  workdir = tmp_path_factory.mktemp('pristine') / 'run'
  experiment.Experiment(smoke_config(), str(workdir), show_progress=False)
  return workdir


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def _edit_json(path, edit):
  with open(path) as f:
    obj = json.load(f)
  _write(path, json.dumps(edit(obj)))


_RESULT = json.dumps({'steps': [0], 'curves': [[0.0]], 'run_s': 1.0, 'compile_s': 0.0,
                      'env_steps': 1})
DAMAGES = [
    ('corrupt tasks.json', lambda d: _write(d / 'tasks.json', '{x'),
     'tasks.json is not valid JSON (Expecting property name enclosed in double quotes at line 1 '
     'column 2); restore tasks.json or start a new --workdir.'),
    ('tasks.json without a split', lambda d: _edit_json(d / 'tasks.json', lambda t: {
        'train': t['train']}), "tasks.json lacks ['test_id', 'test_ood']; restore tasks.json"),
    ('tasks.json of another family', lambda d: _edit_json(d / 'tasks.json', lambda t: {
        s: {'family': 'ant_goal'} for s in t}), 'tasks.json does not hold task sets of '
     'cheetah_vel'),
    ('corrupt config.json', lambda d: _write(d / 'config.json', ''),
     'config.json is not valid JSON (Expecting value at line 1 column 1); restore config.json'),
    ('config.json of another run', lambda d: _edit_json(d / 'config.json', lambda c: dict(
        c, seed=7)), 'holds a run with another config (seed: 7 -> 0); rerun with the same flags'),
    ('versions.json not UTF-8', lambda d: (d / 'versions.json').write_bytes(b'{"jax": "\xff"}'),
     "versions.json cannot be read ('utf-8' codec can't decode byte 0xff"),
    ('tasks.json with other task params', lambda d: _edit_json(d / 'tasks.json', lambda t: {
        s: dict(v, params={'speed': [1.0]}, dtypes={'speed': 'float32'}) for s, v in t.items()}),
     'tasks.json does not hold task sets of cheetah_vel (params'),
    ('corrupt stage result', lambda d: _write(d / 'results' / 'adapt_apb_test_id.json', '[1,'),
     'adapt_apb_test_id.json is not valid JSON (Expecting value at line 1 column 4); delete it '
     'to run stage adapt_apb_test_id again.'),
    ('stage result without its curves', lambda d: _write(
        d / 'results' / 'adapt_scratch_test_ood.json', '{"steps": [0]}'),
     "adapt_scratch_test_ood.json lacks ['curves', 'run_s', 'compile_s', 'env_steps']; delete it "
     'to run stage adapt_scratch_test_ood again.'),
    ('random_return.json without a split', lambda d: _write(
        d / 'results' / 'random_return.json', '{"test_id": -3.0}'),
     "random_return.json lacks ['test_ood']; delete it to run stage random_return again."),
    ('stage checkpoint of another state', lambda d: checkpoint.StageCheckpoints(
        str(d / 'checkpoints' / 'meta_train')).save(1, {'w': np.ones(3)}, [np.zeros(2)]),
     'checkpoints/meta_train holds a checkpoint that cannot be restored'),
    ('damaged backbone checkpoint', lambda d: (
        _write(d / 'results' / 'meta_train.json', _RESULT),
        _write(d / 'checkpoints' / 'backbone' / 'x', 'junk')),
     'checkpoints/backbone holds no params that can be restored'),
]


@pytest.mark.parametrize('damage,message', [(d, m) for _, d, m in DAMAGES],
                         ids=[name for name, _, _ in DAMAGES])
def test_damaged_run_directory_stops_in_one_line_and_is_left_as_it_was(
    pristine, damage, message, capfd, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(pristine, workdir)
  damage(workdir)
  before = _snapshot(workdir)
  line = _stop_line(capfd, workdir)
  assert message in line, line
  assert _snapshot(workdir) == before


def test_workdir_that_is_a_file_or_under_one_stops_in_one_line(capfd, tmp_path):
  path = tmp_path / 'file'
  path.write_text('mine')
  assert _stop_line(capfd, path) == (f'error: --workdir={path} is a file, not a directory; '
                                     'pass a new --workdir.')
  assert 'lies under' in _stop_line(capfd, path / 'run')
  assert path.read_text() == 'mine'


def test_a_stage_checkpoint_asks_for_the_state_structure_only_when_it_has_one(tmp_path):
  """A stage with nothing to resume does not trace the learner's init for its structure."""
  ckpt = checkpoint.StageCheckpoints(str(tmp_path / 'stage'))
  asked = []

  def like():
    asked.append(1)
    return {'w': jax.ShapeDtypeStruct((3,), np.float32)}

  assert ckpt.restore(like) == (None, {}) and not asked
  ckpt.save(2, {'w': np.arange(3, dtype=np.float32)}, [np.zeros(2)], run_s=5.0)
  (state, chunks_done, curves), extra = ckpt.restore(like)
  assert asked == [1] and chunks_done == 2 and extra == {'run_s': 5.0}
  chex.assert_trees_all_equal(state, {'w': np.arange(3, dtype=np.float32)})

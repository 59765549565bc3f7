"""Shared fixtures: compiled env functions are built once per session."""

import json
import os
import pathlib
import subprocess
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')   # as the launcher: no XLA warnings on stderr

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from apb_jax import tasks  # noqa: E402
from apb_jax.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()

if jax.default_backend() != 'cpu':
  # On an accelerator a float32 matmul defaults to reduced precision (TF32 on A100/H100, bf16
  # passes on TPU), and batched and one-task kernels round differently: the H100 missed the
  # equivalence tests' tolerances by relative 3e-5..2e-3. Those tests check that tasks do not
  # interact, not rounding, so they run every matmul at full float32 (subprocesses too). CPU
  # matmuls are already float32, and its programs (and compile cache) stay as they are.
  os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'highest')
  jax.config.update('jax_default_matmul_precision', os.environ['JAX_DEFAULT_MATMUL_PRECISION'])


class CompiledFamily:
  """A family with its jitted single-env and vmapped reset/step."""

  def __init__(self, name):
    self.family = tasks.make(name)
    env = self.family.env
    self.reset = jax.jit(env.reset)
    self.step = jax.jit(env.step)
    self.vreset = jax.jit(jax.vmap(env.reset))
    self.vstep = jax.jit(jax.vmap(env.step))
    self.pipeline_init = jax.jit(env.base.pipeline_init)


_COMPILED = {}


@pytest.fixture(scope='session')
def compiled():
  """compiled(name) -> CompiledFamily, cached for the whole session."""

  def get(name):
    if name not in _COMPILED:
      _COMPILED[name] = CompiledFamily(name)
    return _COMPILED[name]

  return get


def set_fields(config, changes: dict):
  """`config` with `changes` ({'rl.gamma': 0.5, 'baselines.rl2.core_size': 8}) set; returns it."""
  for key, value in changes.items():
    group, _, name = key.rpartition('.')
    (config[group] if group else config)[name] = value
  return config


def shard_run(module: str, changes: dict) -> dict:
  """Mode 'shared' on the action probe (PROBE of test module `module`, 4 tasks) on the
  devices this process has: curves, the output adapter's kernel [4, ...], the backbone's
  first kernel, the device count and the kernel's shard count."""
  import importlib
  from apb_jax.learners import make_train
  from apb_jax.tasks.probes import make_probe
  mod = importlib.import_module(module)
  family = make_probe('action')
  config = mod.PROBE.replace(total_steps=512, eval_every=256, mode='shared', **changes)
  result = make_train(config, family).train(mod._key(3), family.sample(mod._key(0), 4, 'train'),
                                            mod._init_params(4), show_progress=False)
  from apb_jax import hosts
  kernel = result.state.agent.actor['adapters']['out']['kernel']
  backbone = result.state.shared.backbone['dense_0']['kernel']
  return {'devices': jax.device_count(), 'processes': jax.process_count(),
          'shards': len(kernel.sharding.device_set),
          'curves': np.asarray(result.curves).tolist(), 'kernel': hosts.to_host(kernel).tolist(),
          'backbone': hosts.to_host(backbone).tolist()}


SHARD_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import shard_run
print(json.dumps(shard_run({module!r}, {changes!r})))
"""

# One process of a run over `processes` (hosts.start before JAX starts its backend, which
# importing conftest does).
HOSTS_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from apb_jax import hosts
hosts.start('localhost:{port}', {processes}, {process_id})
from conftest import shard_run
print(json.dumps(shard_run({module!r}, {changes!r})))
"""


def _run_with_devices(code, n):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                       text=True, timeout=600, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def run_processes(module: str, changes: dict, processes: int = 2, devices: int = 2) -> list:
  """shard_run over `processes` processes of `devices` CPU devices each, joined by
  jax.distributed on a free localhost port; each process's output."""
  import socket
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu')
  procs = [subprocess.Popen(
      [sys.executable, '-c', HOSTS_SCRIPT.format(
          tests=str(pathlib.Path(__file__).parent), port=port, processes=processes,
          process_id=i, module=module, changes=changes)],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(processes)]
  outs = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr[-3000:]
    outs.append(json.loads(stdout.strip().splitlines()[-1]))
  return outs


@pytest.fixture(scope='session')
def sharded_matches_single():
  """check(module, **changes): mode 'shared' on the action probe (PROBE of test module
  `module`, 4 tasks) run with 2 forced host devices equals the run on 1: the adapters split
  over the devices, the backbone's task-mean gradient all-reduced."""

  def check(module, **changes):
    code = SHARD_SCRIPT.format(tests=str(pathlib.Path(__file__).parent), module=module,
                               changes=changes)
    one, two = shard_run(module, changes), _run_with_devices(code, 2)   # this process: 1 device
    assert (one['devices'], two['devices'], two['shards']) == (1, 2, 2)
    for name in ('curves', 'kernel', 'backbone'):
      np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)

  return check


def assert_each_run_alone_matches(batched, run_one, rng, tasks):
  """`batched: [runs, ...]` equals `run_one(key_r, task_r)` for every run r, with the per-run
  keys `baselines.stage.over_runs` splits from `rng`: vmapping runs changes nothing."""
  import chex
  runs = jax.tree.leaves(tasks)[0].shape[0]
  for i, key in enumerate(jax.random.split(rng, runs)):
    single = run_one(key, jax.tree.map(lambda x, i=i: x[i], tasks))
    chex.assert_trees_all_close(batched[i], single, rtol=1e-5, atol=1e-6)

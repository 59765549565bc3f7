"""Shared fixtures: compiled env functions are built once per session."""

import json
import os
import pathlib
import subprocess
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import pytest  # noqa: E402

from apb_jax import tasks  # noqa: E402
from apb_jax.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


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


@pytest.fixture(scope='session')
def run_with_devices():
  """run_with_devices(code, n) -> the JSON that `code` prints last, run in a fresh process
  with n forced host CPU devices (`code` may `import test_*` from this folder)."""

  def run(code, n):
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}',
               JAX_PLATFORMS='cpu')
    code = f'import sys; sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})\n' + code
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

  return run

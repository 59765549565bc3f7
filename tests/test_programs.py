"""programs.py: a kept program gives jit's results bit for bit; a later launch skips the trace."""

import os
import subprocess
import sys
import time
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import compile_stats, programs
from apb_jax.learners import make_train
from apb_jax.tasks.probes import make_probe
from tests.test_learners import PROBE, _init_params, _key

ARGS = ({'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.float32(0.5)},
        np.linspace(-1, 1, 3, dtype=np.float32))


class Counted:
  """A function that counts its traces: Python runs only while JAX traces it."""

  def __init__(self):
    self.traces = 0

  def __call__(self, params, x):
    self.traces += 1
    y = jnp.tanh(params['w'] @ x + params['b'])
    return {'y': y, 'norm': jnp.sum(y ** 2)}, jax.random.normal(_key(0), (2,)) * y


@pytest.fixture
def kept(tmp_path):
  programs.enable(str(tmp_path), context='experiment A')
  yield tmp_path
  programs.disable()


def test_kept_program_equals_jit_and_a_later_instance_loads_it_without_tracing(kept):
  expected = jax.jit(Counted())(*ARGS)
  first = Counted()
  chex.assert_trees_all_equal(programs.jit(first, 'f')(*ARGS), expected)   # bit for bit
  assert first.traces == 1 and len(list(kept.glob('*.program'))) == 1
  second = Counted()                               # a new launch: a new function object
  out = programs.jit(second, 'f')(*ARGS)
  chex.assert_trees_all_equal(out, expected)
  assert second.traces == 0                        # read from disk, not traced
  assert programs.jit(second, 'f').eval_shape(*ARGS)[0]['y'].shape == (2,)
  assert second.traces == 0


def test_what_determines_the_program_is_in_its_key(kept):
  programs.jit(Counted(), 'f')(*ARGS)
  other_shape = ({**ARGS[0], 'b': np.zeros(2, np.float32)}, ARGS[1])
  for fingerprint, context, args, traces in [
      ('f', 'experiment A', ARGS, 0),               # the same: loaded
      ('g', 'experiment A', ARGS, 1),               # another caller
      ('f', 'experiment B', ARGS, 1),               # another experiment
      ('f', 'experiment A', other_shape, 1)]:       # another argument shape
    programs.enable(str(kept), context=context)
    fun = Counted()
    programs.jit(fun, fingerprint)(*args)
    assert fun.traces == traces, (fingerprint, context)


def test_a_damaged_entry_is_traced_again_with_a_warning_and_replaced(kept):
  expected = jax.jit(Counted())(*ARGS)
  programs.jit(Counted(), 'f')(*ARGS)
  (entry,) = kept.glob('*.program')
  entry.write_bytes(entry.read_bytes()[:100])      # a launch killed mid-write (pre-rename)
  fun = Counted()
  with pytest.warns(UserWarning, match='did not load'):
    out = programs.jit(fun, 'f')(*ARGS)
  chex.assert_trees_all_equal(out, expected)
  assert fun.traces == 1
  again = Counted()
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    programs.jit(again, 'f')(*ARGS)
  assert again.traces == 0
  assert not list(kept.glob('*.tmp'))              # written through a renamed temporary


def test_inside_another_trace_and_when_off(tmp_path):
  programs.enable(str(tmp_path), context='experiment A')
  try:
    inner = programs.jit(Counted(), 'f')
    outer = jax.jit(lambda p, x: inner(p, 2 * x)[0]['norm'])
    chex.assert_trees_all_close(outer(*ARGS), jax.jit(Counted())(ARGS[0], 2 * ARGS[1])[0]['norm'])
  finally:
    programs.disable()
  assert not programs.active()
  off = tmp_path / 'off'
  off.mkdir()
  fun = Counted()
  programs.jit(fun, 'f')(*ARGS)
  programs.jit(fun, 'f')(*ARGS)
  assert fun.traces == 1 and not os.listdir(off)   # plain jit: traced once, nothing kept


def test_a_learner_with_kept_programs_trains_exactly_as_with_jit(tmp_path):
  """HostLoop's chunk, evaluate and init through programs.jit: equal results, and a second
  trainer (as a second launch builds) compiles from the kept programs without tracing."""
  config = PROBE.replace(total_steps=1024, eval_every=512, warmup_steps=128)
  family = make_probe('action')
  tasks = family.sample(_key(0), 2, 'train')
  params = _init_params(2)

  def train():
    return make_train(config, family).train(_key(3), tasks, params, show_progress=False)

  plain = train()
  programs.enable(str(tmp_path), context='probe')
  try:
    first = train()
    compile_stats.install()
    before = compile_stats.snapshot()
    second = train()
    spans = compile_stats.snapshot()['spans'][compile_stats.TRACE]
    traced = compile_stats._top_level(spans, before['time'])
  finally:
    programs.disable()
  for result in (first, second):
    chex.assert_trees_all_equal(result.curves, plain.curves)
    chex.assert_trees_all_equal(result.state.agent, plain.state.agent)
  assert len(list(tmp_path.glob('*.program'))) == 3   # chunk, evaluate, init
  assert not [name for name in traced if name.endswith('_one')], traced   # no learner traced


def test_programs_unread_for_two_weeks_are_removed_and_read_ones_kept(tmp_path):
  programs.enable(str(tmp_path), context='experiment A')
  try:
    programs.jit(Counted(), 'old')(*ARGS)
    (old,) = tmp_path.glob('*.program')
    programs.jit(Counted(), 'read')(*ARGS)
    (read,) = set(tmp_path.glob('*.program')) - {old}
    weeks_ago = time.time() - (programs.UNUSED_DAYS + 1) * 86400
    for entry in (old, read):
      os.utime(entry, (weeks_ago, weeks_ago))
    programs.jit(Counted(), 'read')(*ARGS)          # a launch reads it: its clock restarts
    programs.enable(str(tmp_path), context='experiment A')
  finally:
    programs.disable()
  assert [p.name for p in tmp_path.glob('*.program')] == [read.name]


LAPACK_PROGRAM = """
import sys
import jax.numpy as jnp, numpy as np
from apb_jax import compile_stats, programs
compile_stats.install()
before = compile_stats.snapshot()
programs.enable(sys.argv[1], context='lapack')
def solve(a, b):   # CPU LAPACK kernels (getrf, potrf), as MJX's constraint solver reaches them
  spd = a @ a.T + jnp.eye(3)
  return jnp.linalg.solve(spd, b), jnp.linalg.cholesky(spd)
a = np.arange(9, dtype=np.float32).reshape(3, 3) / 9
out = programs.jit(solve, 'solve')(a, np.ones(3, np.float32))
print(compile_stats.since(before)['programs_loaded'], np.asarray(out[0]).tolist())
"""


def test_a_program_with_lapack_calls_loads_in_a_fresh_process(tmp_path):
  """Without programs._init_cpu_kernels the second process segfaults (measured, rc -11):
  jaxlib sets its LAPACK pointers only when lowering a linalg op, which a loaded program skips."""
  runs = [subprocess.run([sys.executable, '-c', LAPACK_PROGRAM, str(tmp_path)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, 'JAX_PLATFORMS': 'cpu'}) for _ in range(2)]
  for run in runs:
    assert run.returncode == 0, run.stderr[-2000:]
  (traced, first), (loaded, second) = (r.stdout.split(' ', 1) for r in runs)
  assert (traced, loaded) == ('0', '1') and first == second


def test_a_function_export_refuses_runs_as_plain_jit_with_a_warning(kept):
  def with_host_callback(x):   # jax.export keeps no host callbacks
    return jax.pure_callback(lambda v: np.asarray(v) * 2, jax.ShapeDtypeStruct((3,), np.float32),
                             x) + 1.0

  program = programs.jit(with_host_callback, 'callback')
  with pytest.warns(UserWarning, match='program not kept'):
    out = program(ARGS[1])
  chex.assert_trees_all_equal(out, jax.jit(with_host_callback)(ARGS[1]))
  chex.assert_trees_all_equal(program(ARGS[1]), out)   # plain jit from then on, no new warning
  assert not list(kept.glob('*.program'))


def test_a_family_reads_its_obs_size_from_the_kept_reset_program(tmp_path):
  """obs_size traces MJX's reset (1.6 s a launch) unless a kept program holds it."""
  from apb_jax import tasks
  programs.enable(str(tmp_path), context='obs size')
  try:
    first = tasks.make('cheetah_vel')
    first_size = first.obs_size
    compile_stats.install()
    before = compile_stats.snapshot()
    second = tasks.BUILDERS['cheetah_vel']()   # a new family and env, as a new launch builds
    second_size = second.obs_size
    stats = compile_stats.since(before)
    traced = compile_stats._top_level(
        compile_stats.snapshot()['spans'].get(compile_stats.TRACE, []), before['time'])
  finally:
    programs.disable()
  task = jax.tree.map(lambda x: x[0], first.sample(_key(0), 1, 'train'))
  assert first_size == second_size == first.env.observation_shape(task)[-1]
  assert stats['programs_loaded'] == 1 and '_reset' not in traced, (stats, traced)

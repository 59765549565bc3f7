"""The persistent compilation cache: one directory per host kind, never a reason to stop."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from apb_jax import cache


def test_host_kinds_get_their_own_directory(monkeypatch):
  here = cache.host_key()
  assert here == cache.host_key() and len(here) == 16
  monkeypatch.setattr(cache, '_cpu', lambda: 'another model with avx512f missing')
  assert cache.host_key() != here


def test_an_unwritable_cache_turns_itself_off_with_a_warning(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')                       # a file where the cache directory would go
  before = jax.config.jax_compilation_cache_dir
  with pytest.warns(UserWarning, match='compilation cache off.*APB_JAX_CACHE_DIR'):
    assert cache.enable_compilation_cache(str(blocker)) is None
  assert jax.config.jax_compilation_cache_dir == before   # this session's cache untouched


def test_an_entry_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
  from jax._src import lru_cache
  cache._write_entries_atomically()
  store = lru_cache.LRUCache(str(tmp_path), max_size=-1)
  store.put('k1', b'x' * 1000)
  assert store.get('k1') == b'x' * 1000
  store.put('k1', b'other')                      # an entry is never replaced
  assert store.get('k1') == b'x' * 1000

  def killed(*_):                                # the launch dies between write and rename
    raise KeyboardInterrupt
  monkeypatch.setattr(os, 'replace', killed)
  with pytest.raises(KeyboardInterrupt):
    store.put('k2', b'y' * 1000)
  assert store.get('k2') is None                 # no partial entry for a later launch to read
  assert sorted(p.name for p in tmp_path.iterdir()) == ['k1-cache']   # nor a temporary file


_QUIET = textwrap.dedent('''
    import os, sys, warnings
    from apb_jax import cache
    cache.quiet_cache_hits()
    os.write(2, b"E1206 02:17:00.68 1 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result. SIGILL\\n")
    os.write(2, b"W1206 02:17:00.67 1 pjrt_executable.cc:642] Assume version compatibility. PjRt-IFRT\\n")
    os.write(2, b"E1206 02:17:00.70 1 other.cc:1] a real XLA error\\n")
    warnings.warn('a python warning')
    print('to stdout')
    if sys.argv[1] == 'crash':
      import ctypes
      ctypes.string_at(0)                        # a segmentation fault
''')


@pytest.mark.parametrize('end', ['exit', 'crash'])
def test_the_launcher_drops_only_xlas_cache_hit_lines(end):
  out = subprocess.run([sys.executable, '-c', _QUIET, end], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.getcwd()), timeout=120)
  assert 'cpu_aot_loader' not in out.stderr and 'Assume version' not in out.stderr
  assert 'a real XLA error' in out.stderr and 'a python warning' in out.stderr
  assert out.stdout == 'to stdout\n'
  if end == 'crash':                             # faulthandler still reports the crash
    assert out.returncode != 0 and 'Segmentation fault' in out.stderr, out.stderr
  else:
    assert out.returncode == 0, out.stderr


_WORKER = textwrap.dedent('''
    import sys
    import jax, jax.numpy as jnp
    from apb_jax import cache
    cache.enable_compilation_cache(sys.argv[1], min_compile_secs=0.0)
    total = 0.0
    for n in range(8):                        # eight programs, each written to the cache
      f = jax.jit(lambda x, n=n: jnp.tanh(x @ x.T + n).sum() + jnp.cumsum(x, axis=0).sum())
      total += float(f(jnp.ones((64 + n, 32))))
    print(repr(total))
''')


@pytest.mark.slow   # a few minutes: rounds of 4 processes, some killed while writing the cache
def test_many_launches_sharing_one_cache_with_some_killed_never_crash(tmp_path):
  import random
  import time
  rng, env = random.Random(0), dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=os.getcwd())
  run = [sys.executable, '-c', _WORKER, str(tmp_path / 'xla')]
  killed = 0
  for _ in range(3):                          # rounds: all start together, some are killed
    procs = [subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    time.sleep(rng.uniform(3.0, 8.0))
    for p in procs[:2]:
      if p.poll() is None:
        p.kill()
        killed += 1
    for p in procs:
      p.communicate(timeout=600)   # (reads the pipes: a full pipe would block the worker)
      assert p.returncode in (0, -9), p.returncode
  assert killed > 0
  outs = [subprocess.run(run, env=env, capture_output=True, timeout=600) for _ in range(3)]
  assert [o.returncode for o in outs] == [0, 0, 0], outs[0].stderr.decode()[-2000:]
  assert len({o.stdout for o in outs}) == 1   # every launch computes the same from the cache

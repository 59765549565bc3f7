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

"""JAX's persistent compilation cache, shared by tests, launchers and benches."""

from __future__ import annotations

import os

import jax

DEFAULT_DIR = os.path.join(
    os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
    'apb_jax', 'xla')


def enable_compilation_cache(path: str | None = None,
                             min_compile_secs: float = 0.5) -> str:
  """Turns on the persistent cache at `path` ($APB_JAX_CACHE_DIR or ~/.cache).

  Compiled executables whose compile took longer than `min_compile_secs` are
  written there and reused by later processes with the same jax version,
  backend and program. Returns the directory used.
  """
  path = path or os.environ.get('APB_JAX_CACHE_DIR') or DEFAULT_DIR
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    min_compile_secs)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  return path

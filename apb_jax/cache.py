"""JAX's persistent compilation cache, shared by tests, launchers and benches.

Entries live in a subdirectory per host kind (`host_key()`: jax and jaxlib versions, the
processor's model and instruction-set flags), so an XLA:CPU executable compiled on one
kind of machine is never loaded on another (a shared home directory, a cluster's mixed
nodes, a cache carried between machines): JAX's own key names the backend but not the
CPU's features. A cache that cannot be used never stops a run: an unwritable directory
turns the cache off with one warning.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import warnings

import jax

DEFAULT_DIR = os.path.join(
    os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
    'apb_jax', 'xla')


def _cpu() -> str:
  """The processor's model name and feature flags (Linux), else platform's description."""
  try:
    with open('/proc/cpuinfo') as f:
      fields = dict(line.split(':', 1) for line in f.read().split('\n\n')[0].splitlines()
                    if ':' in line)
    return ' '.join(fields.get(k, '').strip() for k in ('model name', 'flags'))
  except OSError:
    return platform.processor() or platform.platform()


def host_key() -> str:
  """A short name of this kind of host: one cache directory per kind."""
  parts = [jax.__version__, importlib.metadata.version('jaxlib'), platform.machine(), _cpu()]
  return hashlib.sha256('\n'.join(parts).encode()).hexdigest()[:16]


def enable_compilation_cache(path: str | None = None,
                             min_compile_secs: float = 0.5) -> str | None:
  """Turns on the persistent cache under `path` ($APB_JAX_CACHE_DIR or ~/.cache/apb_jax/xla),
  in this host kind's subdirectory.

  Compiled executables whose compile took longer than `min_compile_secs` are written there
  and reused by later processes on the same kind of host with the same jax version, backend
  and program. Returns the directory used, or None (with a warning) where it cannot be
  written: the run goes on without the cache.
  """
  base = path or os.environ.get('APB_JAX_CACHE_DIR') or DEFAULT_DIR
  path = os.path.join(base, host_key())
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
      raise PermissionError(f'{path} is not writable')
  except OSError as e:
    warnings.warn(f'compilation cache off ({e}); set APB_JAX_CACHE_DIR to a writable '
                  'directory to keep compiled programs between runs.', stacklevel=2)
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    min_compile_secs)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  return path

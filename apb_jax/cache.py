"""JAX's persistent compilation cache, shared by tests, launchers and benches.

Entries live in a subdirectory per host kind (`host_key()`: jax and jaxlib versions, the
processor's model and instruction-set flags), so an XLA:CPU executable compiled on one
kind of machine is never loaded on another (a shared home directory, a cluster's mixed
nodes, a cache carried between machines): JAX's own key names the backend but not the
CPU's features. A cache that cannot be used never stops a run: an unwritable directory
turns the cache off with one warning.

Entries are written atomically (a temporary file renamed into place): jax 0.9.2's file cache
writes an entry in place (`Path.write_bytes`), so a launch killed mid-write left a truncated
entry that every later launch read, warned about and recompiled, and a launch reading while
another wrote could read half an entry. `quiet_cache_hits` drops the two log lines XLA:CPU
prints on every cache hit (openxla/xla#44565, jax-ml/jax#38445: a tuning hint misread as a
missing CPU feature; the entry loads and runs, and `host_key` keeps entries per CPU kind).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import sys
import tempfile
import warnings

import jax
from jax._src import lru_cache

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


def _host_dir(path: str | None, *parts: str, off: str) -> str | None:
  """`<base>/<parts>/<host kind>`, created, under `path`, $APB_JAX_CACHE_DIR or DEFAULT_DIR;
  None, with the warning `<off> (<why>); set APB_JAX_CACHE_DIR to a writable directory...`
  (to the caller's caller), where it cannot be written."""
  base = path or os.environ.get('APB_JAX_CACHE_DIR') or DEFAULT_DIR
  path = os.path.join(base, *parts, host_key())
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
      raise PermissionError(f'{path} is not writable')
  except OSError as e:
    warnings.warn(f'{off} ({e}); set APB_JAX_CACHE_DIR to a writable directory.',
                  stacklevel=3)
    return None
  return path


def program_dir(path: str | None = None) -> str | None:
  """Where launches keep traced programs (programs.py): `programs/<host kind>` under the
  cache's base directory (`path`, $APB_JAX_CACHE_DIR or ~/.cache/apb_jax/xla); None (with a
  warning) where it cannot be written."""
  return _host_dir(path, 'programs', off='traced programs not kept')


def enable_compilation_cache(path: str | None = None,
                             min_compile_secs: float = 0.5) -> str | None:
  """Turns on the persistent cache under `path` ($APB_JAX_CACHE_DIR or ~/.cache/apb_jax/xla),
  in this host kind's subdirectory.

  Compiled executables whose compile took longer than `min_compile_secs` are written there
  and reused by later processes on the same kind of host with the same jax version, backend
  and program. Returns the directory used, or None (with a warning) where it cannot be
  written: the run goes on without the cache.
  """
  path = _host_dir(path, off='compilation cache off')
  if path is None:
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    min_compile_secs)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  _write_entries_atomically()
  return path


def _atomic_put(self, key: str, value: bytes) -> None:
  """LRUCache.put (no eviction: our caches set no max size) writing a temporary file in
  the cache directory and renaming it into place, so no reader sees a partial entry."""
  if not key:
    raise ValueError('key cannot be empty')
  final = self.path / f'{key}{lru_cache._CACHE_SUFFIX}'
  if final.exists():
    return
  fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f'.{key[:40]}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(value)
    os.replace(tmp, final)          # atomic on POSIX: the whole entry or none
  except BaseException:
    os.unlink(tmp)
    raise


def _write_entries_atomically() -> None:
  cls = lru_cache.LRUCache
  if getattr(cls.put, '_apb_atomic', False):
    return
  original = cls.put

  def put(self, key, value):
    if getattr(self, 'eviction_enabled', True):   # a max size set: jax's own (locked) put
      return original(self, key, value)
    return _atomic_put(self, key, value)
  put._apb_atomic = True
  cls.put = put


# XLA:CPU's lines on each cache hit (module:line as in jaxlib 0.9.2's log prefix).
NOISE = (b'cpu_aot_loader.cc', b'] Assume version compatibility. PjRt-IFRT')


_FILTER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C stops the launcher, which ends us
noise = [n.encode() for n in sys.argv[1:]]
pending = b''
while chunk := os.read(0, 65536):
  *lines, pending = (pending + chunk).split(b'\\n')
  out = b''.join(line + b'\\n' for line in lines if not any(n in line for n in noise))
  if out:
    os.write(1, out)
if pending and not any(n in pending for n in noise):
  os.write(1, pending)
"""


def quiet_cache_hits(noise=NOISE) -> None:
  """Routes file descriptor 2 (where XLA's C++ logging writes) through a small filter
  process that drops lines containing any of `noise` and passes every other line on at
  once. A process, not a thread: it outlives a crash of the launcher and passes on the
  last lines written before it (XLA's check failures). Python's own sys.stderr (tracebacks,
  warnings, absl) keeps writing to the terminal directly, and faulthandler reports a crash
  there. For launchers; tests keep the raw stream."""
  if getattr(quiet_cache_hits, '_installed', False):
    return
  quiet_cache_hits._installed = True
  import atexit
  import faulthandler
  import subprocess
  sys.stderr.flush()
  terminal = os.dup(2)
  read, write = os.pipe()
  filt = subprocess.Popen([sys.executable, '-c', _FILTER, *(n.decode() for n in noise)],
                          stdin=read, stdout=terminal)
  os.close(read)
  os.dup2(write, 2)
  os.close(write)
  sys.stderr = open(terminal, 'w', buffering=1, closefd=False,
                    encoding=sys.stderr.encoding, errors='backslashreplace')
  faulthandler.enable(file=sys.stderr)

  def drain():                # at exit: close the pipe's write end, let the filter finish
    os.dup2(terminal, 2)
    try:
      filt.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
      pass
  atexit.register(drain)

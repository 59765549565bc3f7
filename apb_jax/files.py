"""Files of a run directory, written atomically: a kill leaves the old file or the new one.

    atomic_write(path, lambda f: f.write(b'...'))   # f: a binary file
    atomic_write_local(path, write)                 # the same, this process alone
    write_json(path, obj)
    read_json(path, fix='delete it to rerun the stage', keys=('steps',))   # RunFileError if bad
    remove_tree(path)

A run of several processes (hosts.py) calls these on every process: process 0 writes or
removes, and every process waits until it has, so all read the same directory after.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Callable, Sequence

from apb_jax import hosts


def atomic_write(path: str, write: Callable) -> None:
  """Calls `write(binary_file)` on a temporary file next to `path`, then renames it onto `path`."""
  if hosts.writer():
    atomic_write_local(path, write)
  hosts.barrier(f'written {path}')


def remove_tree(path: str) -> None:
  """Deletes the directory `path` if it is there."""
  if hosts.writer():
    shutil.rmtree(path, ignore_errors=True)
  hosts.barrier(f'removed {path}')


def atomic_write_local(path: str, write: Callable) -> None:
  """`atomic_write` in this process alone (no other process waits): for per-process files."""
  directory, name = os.path.split(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{name}.', suffix='.tmp')
  try:
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; give the usual permissions of a new file
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON to `path`, atomically."""
  atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


class RunFileError(ValueError):
  """A run-directory file that cannot be used; the message names the file and the fix."""


def first_line(error: Exception) -> str:
  """'Type: first line of the message' (at most 200 characters), to quote in one line."""
  text = str(error).strip()
  return f'{type(error).__name__}: {text.splitlines()[0][:200]}' if text else type(error).__name__


def read_json(path: str, fix: str = 'restore it or start a new --workdir',
              keys: Sequence[str] = ()) -> Any:
  """The JSON object in `path`. A file that cannot be read or parsed, or (with `keys`) is not
  an object holding those keys, raises RunFileError: one line naming the file, what is
  wrong and `fix`."""
  try:
    with open(path, encoding='utf-8') as f:
      obj = json.load(f)
  except json.JSONDecodeError as e:
    raise RunFileError(f'{path} is not valid JSON ({e.msg} at line {e.lineno} column '
                       f'{e.colno}); {fix}.') from None
  except (OSError, UnicodeDecodeError) as e:
    raise RunFileError(f'{path} cannot be read ({getattr(e, "strerror", None) or e}); '
                       f'{fix}.') from None
  missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
  if missing:
    raise RunFileError(f'{path} lacks {missing}; {fix}.')
  return obj

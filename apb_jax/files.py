"""Files of a run directory, written atomically: a kill leaves the old file or the new one.

    atomic_write(path, lambda f: f.write(b'...'))   # f: a binary file
    write_json(path, obj); read_json(path)
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable


def atomic_write(path: str, write: Callable) -> None:
  """Calls `write(binary_file)` on a temporary file next to `path`, then renames it onto `path`."""
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


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)

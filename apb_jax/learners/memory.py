"""Will a learner state fit? Checked from its shapes alone, before anything compiles.

    check_fits(abstract_state, k)   # one-line ValueError naming the fix if it cannot fit

The learner state (replay buffers dominate: K tasks x capacity x transition
size) is sharded over the local devices along the task axis. A chunk takes the
state and returns a new one, so a device holds it twice while a chunk runs;
activations and the compiled program need room besides. The check asks for
2 x state <= 90% of the first device's memory (the allocator's limit on a GPU or
TPU, the physical RAM on a CPU).
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np

HEADROOM = 0.9


def state_bytes(abstract_state) -> int:
  """Bytes of every leaf of a (possibly abstract: ShapeDtypeStruct) state."""
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(abstract_state)))


def memory_stats(device) -> dict:
  """`device.memory_stats()` (e.g. 'bytes_limit', 'peak_bytes_in_use'), {} where the backend
  has none (the CPU's, or not implemented)."""
  try:
    return device.memory_stats() or {}
  except Exception:   # not implemented on some backends  # noqa: BLE001
    return {}


def device_bytes(device) -> Optional[int]:
  """Memory of `device` in bytes: the allocator's limit, or the host's RAM for a CPU."""
  stats = memory_stats(device)
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  if device.platform == 'cpu':
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  return None


def check_fits(abstract_state, k: int, devices=None) -> None:
  """Raises a one-line ValueError if twice the state of `k` tasks, spread over `devices`
  (default: the local devices), exceeds 90% of a device's memory."""
  devices = devices or jax.local_devices()
  limit = device_bytes(devices[0])
  if limit is None:
    return
  per_device = state_bytes(abstract_state) / len(devices)
  if 2 * per_device > HEADROOM * limit:
    gib = 2 ** 30
    raise ValueError(
        f'the learner state of {k} tasks (replay buffers dominate) needs '
        f'{per_device / gib:.1f} GiB per device, held twice while a chunk runs, beyond the '
        f'{limit / gib:.1f} GiB of {devices[0].device_kind} ({len(devices)} device(s)); lower '
        '--config.rl.buffer_size, train fewer tasks per device (--config.adapt.num_tasks, '
        '--config.adapt.seeds, --config.meta.num_tasks), or use more devices.')

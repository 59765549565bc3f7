"""Sharding the task axis across devices with `jax.sharding`.

With one device these are no-ops. With D > 1 devices (GPUs, or CPU devices
from `XLA_FLAGS=--xla_force_host_platform_device_count=D`) every leaf with a
leading task axis is placed with `NamedSharding(mesh, P('task'))` on a 1-D
mesh over all devices and the backbone is replicated; `jit` then partitions
the vmapped chunk along that axis, so the same code runs on 1 or many devices.

Multi-host: start every process with `jax.distributed.initialize()` (it reads
the coordinator address, process count and id from the cluster environment,
or pass them explicitly) before any other JAX call; `jax.devices()` then lists
the devices of all hosts and the same mesh spans them. Each host must call the
trainer with the same arguments (same seed and tasks).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = 'task'


def task_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), (AXIS,))


def shard_tasks(tree):
  """Places leaves `[K, ...]` split over the task mesh (K divisible by D)."""
  n = jax.device_count()
  if n == 1:
    return tree
  for leaf in jax.tree.leaves(tree):
    if leaf.shape[0] % n:
      raise ValueError(
          f'{leaf.shape[0]} tasks cannot be split evenly over {n} devices; use a '
          f'multiple of {n} tasks (or tasks x seeds).')
  return jax.device_put(tree, NamedSharding(task_mesh(), P(AXIS)))


def replicate(tree):
  """Places `tree` whole on every device (e.g. the shared backbone)."""
  if jax.device_count() == 1:
    return tree
  return jax.device_put(tree, NamedSharding(task_mesh(), P()))

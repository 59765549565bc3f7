"""Many processes (JAX's multi-controller runtime, `jax.distributed`): start-up, which process
writes the run directory, and global arrays read on the host.

    hosts.start('10.0.0.1:4321', num_processes=2, process_id=0)   # or hosts.start(auto=True)
    if hosts.writer(): ...                 # process 0 writes JSON, logs, TensorBoard, plots
    values = hosts.to_host(tree)           # numpy, the whole global arrays, on every process
    hosts.barrier('results written')       # every process waits here for the others

Every process runs the same program on the same arguments; `jax.devices()` then lists the
devices of all processes and the task mesh (learners/sharding.py) spans them. With one
process (the default) `start` does nothing, `writer()` is true, `to_host` is `np.asarray`
and `barrier` returns at once, so a single process behaves exactly as without this module.
"""

from __future__ import annotations

import functools
import itertools
import socket
import time

import jax
from jax import monitoring
import numpy as np

from apb_jax import compile_stats


def start(coordinator_address: str | None = None, num_processes: int | None = None,
          process_id: int | None = None, auto: bool = False, timeout_s: int = 120) -> None:
  """Joins the processes of one run (before any other JAX call); a mistake is a ValueError of
  one line naming the fix. `auto`: the cluster says (SLURM, a TPU pod, Kubernetes...)."""
  given = (coordinator_address, num_processes, process_id)
  if not auto and all(v is None for v in given):
    return                                       # one process
  if not auto:
    if any(v is None for v in given):
      raise ValueError('pass --coordinator_address, --num_processes and --process_id together '
                       '(or --hosts_auto where the cluster sets them: SLURM, TPU pods).')
    if not isinstance(num_processes, int) or num_processes < 1:
      raise ValueError(f'--num_processes={num_processes} must be an int >= 1: the processes '
                       'of the run, all started with the same value.')
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
      raise ValueError(f'--process_id={process_id} must be one of 0..{num_processes - 1}: '
                       'a different id for each process of the run.')
    host, port = _address(coordinator_address)
    if process_id != 0:
      _wait_for(host, port, coordinator_address, timeout_s)
  # XLA:CPU needs a collectives backend to run one program over several processes
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             initialization_timeout=timeout_s)
  _align_compiles()


def _align_compiles() -> None:
  """Every process waits for the others after building each program (compiled, or read from
  the persistent cache), so they start its first run, and the Gloo collectives in it,
  together: XLA:CPU's Gloo gives up on a peer 30 s late, and a process compiling a program
  another had read from the cache was that late (measured: `Gloo context initialization
  failed: GetKeyValue() timed out` in a learner's first evaluation under load). Every
  process builds the same programs in the same order: only files differ between them."""
  def on_duration(event: str, duration: float, fun_name: str = '', **_) -> None:
    del duration
    if event == compile_stats.BACKEND:
      barrier(f'built {fun_name}')
  monitoring.register_event_duration_secs_listener(on_duration)


def _address(address: str) -> tuple[str, int]:
  host, _, port = str(address).rpartition(':')
  if not host or not port.isdigit():
    raise ValueError(f'--coordinator_address={address} must be host:port, the address of '
                     'process 0 (e.g. 10.0.0.1:4321), the same for every process.')
  return host, int(port)


def _wait_for(host: str, port: int, address: str, timeout_s: float) -> None:
  """Raises the one-line error here, where XLA's coordination client would abort the process
  (a C++ fatal error, no Python exception) when process 0 cannot be reached in time."""
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, port), timeout=2):
        return
    except OSError as e:
      if time.monotonic() > deadline:
        raise ValueError(
            f'no coordinator at --coordinator_address={address} after {timeout_s:.0f} s ({e}); '
            'start process 0 with that address, or pass the address process 0 listens on.'
        ) from None
      time.sleep(0.5)


def writer() -> bool:
  """True on the one process that writes the run directory's files (process 0)."""
  return jax.process_index() == 0


def to_host(tree):
  """`tree`'s arrays as numpy, whole: gathered from every process when the run spans several
  (every process gets the same values and so takes the same decisions).

  Each gather program is compiled (or found compiled) before a barrier and run after it, so
  the processes enter its collective together: XLA:CPU's Gloo collectives give up on a peer
  30 s late, and a process still compiling the gather under load was that late (measured)."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  leaves, treedef = jax.tree.flatten(tree)
  spread = [i for i, x in enumerate(leaves) if not _whole_here(x)]
  gathers = {i: _gather_program(leaves[i].shape, leaves[i].dtype, leaves[i].sharding)
             for i in spread}
  barrier('to_host')
  out = [np.asarray(gathers[i](x).addressable_data(0)) if i in gathers else np.asarray(x)
         for i, x in enumerate(leaves)]
  return jax.tree.unflatten(treedef, out)


@functools.lru_cache(maxsize=None)
def _gather_program(shape, dtype, sharding):
  """The compiled identity that replicates a global array [shape] over every device."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('all',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  spec = jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
  return jax.jit(lambda x: x, out_shardings=replicated).lower(spec).compile()


def _whole_here(x) -> bool:
  return not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated


# How long a process waits for the others at a barrier: one may compile (or restore) for
# minutes on a loaded CPU while another, its programs read from the cache, waits.
BARRIER_TIMEOUT_S = 3600
_barriers = itertools.count()


def barrier(name: str) -> None:
  """Every process waits here until all have reached the barrier `name` (one process: none).

  On the coordination service's key-value store, not a device collective: XLA:CPU's Gloo
  collectives give up when a peer is 30 s late (`Gloo context initialization failed:
  GetKeyValue() timed out`, measured when one process of a two-process smoke compiled
  while the other gathered), so every collective we issue (to_host's gather) is preceded
  by this barrier. Processes must pass the same barriers in the same order: a different
  `name` at the same barrier is a RuntimeError naming both."""
  if jax.process_count() == 1:
    return
  from jax._src import distributed
  client, me = distributed.global_state.client, jax.process_index()
  n = next(_barriers)
  client.key_value_set(f'apb/barrier/{n}/{me}', name)
  client.wait_at_barrier(f'apb/barrier/{n}', BARRIER_TIMEOUT_S * 1000)
  names = {p: client.blocking_key_value_get(f'apb/barrier/{n}/{p}', 60_000)
           for p in range(jax.process_count())}
  if len(set(names.values())) > 1:
    raise RuntimeError(f'processes reached different barriers ({names}): every process '
                       'must run the same program with the same config and run directory.')

r"""Several bench processes on one device, timed one at a time.

A GPU machine compiles slowly (tens of seconds per learner) and has many CPU cores, so
`accel_check.sh` runs one bench process per (learner, K) at once. Their compiles overlap;
their timed sections must not, or each would measure a shared device:

    --turns=DIR --turns_n=N   every process compiles everything it will time, marks itself
                              ready in DIR, waits until N processes are ready (at most
                              --turns_wait s), then times while holding an exclusive lock on
                              DIR/lock. Nothing else the processes run overlaps a timed section.

Without --turns (`make bench`, one process) `ready()` and `turn()` do nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import time

from absl import flags, logging

flags.DEFINE_string('turns', '', 'Directory shared by bench processes on one device: each '
                    'compiles first, then times alone holding a lock there (bench_turns.py).')
flags.DEFINE_integer('turns_n', 1, 'Processes that share --turns.')
flags.DEFINE_integer('turns_wait', 900, 'Seconds a ready process waits for the others.')
FLAGS = flags.FLAGS


def ready() -> None:
  """Marks this process ready (call it after compiling, also when compiling failed)."""
  if FLAGS.turns:
    os.makedirs(FLAGS.turns, exist_ok=True)
    open(os.path.join(FLAGS.turns, f'ready.{os.getpid()}'), 'w').close()


@contextlib.contextmanager
def turn():
  """Holds the device alone: waits for --turns_n ready processes, then for the lock.
  Yields {'ready': processes ready when timing began, 'waited_s': seconds waited}."""
  info = {'ready': 1, 'waited_s': 0.0}
  if not FLAGS.turns:
    yield info
    return
  start = time.perf_counter()
  while (len(glob.glob(os.path.join(FLAGS.turns, 'ready.*'))) < FLAGS.turns_n
         and time.perf_counter() - start < FLAGS.turns_wait):
    time.sleep(0.5)
  with open(os.path.join(FLAGS.turns, 'lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    info.update(ready=len(glob.glob(os.path.join(FLAGS.turns, 'ready.*'))),
                waited_s=time.perf_counter() - start)
    if info['ready'] < FLAGS.turns_n:
      logging.warning('timing with %d of %d bench processes ready: the others may still be '
                      'compiling beside these timings', info['ready'], FLAGS.turns_n)
    try:
      yield info
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)

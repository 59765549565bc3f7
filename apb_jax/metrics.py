"""The metrics log of a run: one JSON object per line (`metrics.jsonl`) and TensorBoard events.

    log = MetricsLog(run_dir)
    log.write('adapt', step, {'eval_return': [K], 'critic_loss': [K]}, method='apb', split='test_id')

Each line holds the stage, the tags (method, split), the env steps per task,
the wall time, and for every metric its mean over tasks and its per-task
values. TensorBoard gets the mean as the scalar `<stage>[/<method>][/<split>]/<name>`
(`tensorboard --logdir <run_dir>/tb`). After a resume, lines between the last
checkpoint and the kill are written again; readers keep the last line for a
(stage, tags, step).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from tensorboardX import SummaryWriter

from apb_jax import hosts


class MetricsLog:

  def __init__(self, run_dir: str):
    """Opens nothing yet: a run that stops before its first record leaves no new file."""
    self.path = os.path.join(run_dir, 'metrics.jsonl')
    self._run_dir, self._file, self._tb = run_dir, None, None

  def write(self, stage: str, step: int, metrics: dict, **tags) -> None:
    if not hosts.writer():       # process 0 of a run over several processes writes the log
      return
    if self._file is None:
      self._file = open(self.path, 'a', buffering=1)     # line-buffered: whole lines on disk
      self._tb = SummaryWriter(os.path.join(self._run_dir, 'tb'), flush_secs=10)
    record = {'stage': stage, **tags, 'step': int(step), 'time': time.time()}
    prefix = '/'.join([stage, *[str(v) for v in tags.values()]])
    for name, value in metrics.items():
      value = np.asarray(value, np.float64)
      record[name] = float(value.mean())
      if value.ndim:
        record[f'{name}_per_task'] = value.reshape(-1).tolist()
      self._tb.add_scalar(f'{prefix}/{name}', record[name], int(step))
    self._file.write(json.dumps(record) + '\n')

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._tb.close()


def read(path: str) -> list[dict]:
  """The records of `metrics.jsonl`, keeping the last one per (stage, tags, step)."""
  records = {}
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      r = json.loads(line)
      key = tuple((k, v) for k, v in r.items() if k in ('stage', 'method', 'split', 'step'))
      records[key] = r
  return list(records.values())

"""Progress for long host loops: a bar on a terminal, plain lines on stderr otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
  """`update(steps, value)` after each chunk; `close()` at the end."""

  def __init__(self, total: int, label: str, enabled: bool = True, width: int = 30):
    self.total, self.label, self.enabled, self.width = total, label, enabled, width
    self.tty = sys.stderr.isatty()
    self.start = time.perf_counter()
    self.first_steps = None

  def update(self, steps: int, value: float):
    if not self.enabled:
      return
    if self.first_steps is None:
      self.first_steps, self.start = steps, time.perf_counter()
    elapsed = time.perf_counter() - self.start
    rate = (steps - self.first_steps) / elapsed if elapsed > 0 else 0.0
    frac = steps / max(self.total, 1)
    text = (f'{self.label} {steps:>9d}/{self.total} env steps/task  '
            f'{rate:8.0f} steps/s/task  eval return {value:9.2f}')
    if self.tty:
      bar = '#' * int(frac * self.width)
      sys.stderr.write(f'\r[{bar:<{self.width}}] {text}')
      sys.stderr.flush()
    else:
      line(text)

  def close(self):
    if self.enabled and self.tty:
      sys.stderr.write('\n')


def line(text: str):
  """One timestamped line on stderr: the progress lines, and stages with no chunks to show."""
  print(f'{time.strftime("%H:%M:%S")} {text}', file=sys.stderr, flush=True)

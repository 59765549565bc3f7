"""What this process traced and compiled, read from JAX's own monitoring events.

    compile_stats.install()                 # once per process, before the first jit
    before = compile_stats.snapshot()
    ...                                     # anything that jits
    compile_stats.since(before)             # {'programs_compiled': 12, 'cache_hits': 3, ...}

JAX times each jitted function's trace to a jaxpr, its lowering to MLIR and its backend
compile (`jax._src.dispatch`'s events); a program found in the persistent compilation cache
still passes through the backend-compile timer (the time to load it) and also records a
cache hit. So `programs_compiled` = backend compiles - cache hits, and `backend_s` holds the
loads too. Traces nest (a jitted function calling jnp's jitted functions traces them inside
its own trace), so each `*_s` is the wall time covered by the union of its events' spans,
not the sum of their durations. `traced_more_than_once` names the functions traced more
than once at the top level in the window (a trace nested in another trace or in a lowering,
such as jnp's jitted helpers inside a learner's trace, is part of that program and not
counted): a retrace of one program with new shapes or static arguments, or a second program
built from the same function, the place to look for compile time spent twice.
"""

from __future__ import annotations

import collections
import threading
import time

from jax import monitoring

TRACE = '/jax/core/compile/jaxpr_trace_duration'
LOWER = '/jax/core/compile/jaxpr_to_mlir_module_duration'
BACKEND = '/jax/core/compile/backend_compile_duration'
CACHE_HIT = '/jax/compilation_cache/cache_hits'
PROGRAM_LOADED = '/apb_jax/programs/loaded'    # programs.py: a kept program read from disk
PROGRAM_TRACED = '/apb_jax/programs/traced'    # programs.py: a program traced and kept
PROGRAM_EVENTS = {PROGRAM_LOADED: 'programs_loaded', PROGRAM_TRACED: 'programs_traced'}
SECONDS = {TRACE: 'trace_s', LOWER: 'lower_s', BACKEND: 'backend_s'}

_lock = threading.Lock()
_counts = collections.Counter()             # event -> occurrences
_spans = collections.defaultdict(list)      # event -> [(start, end, function name)] (time.time())
_installed = False


def _on_duration(event: str, duration: float, fun_name: str = '', **_) -> None:
  if event in SECONDS:
    with _lock:
      _counts[event] += 1


def _on_span(event: str, start: float, end: float, fun_name: str = '', **_) -> None:
  if event in SECONDS:
    with _lock:
      _spans[event].append((start, end, fun_name))


def _covered(spans, since: float) -> float:
  """Seconds covered by the union of the spans that start at or after `since`."""
  total, reach = 0.0, since
  for start, end, *_ in sorted(s for s in spans if s[0] >= since):
    if end > reach:
      total += end - max(start, reach)
      reach = end
  return total


def _top_level(spans, since: float, outer=()) -> collections.Counter:
  """{function name: spans} over the `spans` from `since` on that no other span of `spans`
  or `outer` contains (a lowering traces helpers of its own: `outer` = lowering spans)."""
  names, reach = collections.Counter(), since
  tagged = [(*s, True) for s in spans] + [(*s, False) for s in outer]
  for start, end, name, counted in sorted((s for s in tagged if s[0] >= since),
                                          key=lambda s: (s[0], -s[1])):
    if start >= reach and counted:
      names[name] += 1
    reach = max(reach, end)
  return names


def _on_event(event: str, **_) -> None:
  if event == CACHE_HIT or event in PROGRAM_EVENTS:
    with _lock:
      _counts[event] += 1


def install() -> None:
  """Registers the listeners (once per process; later calls do nothing)."""
  global _installed
  if not _installed:
    monitoring.register_event_duration_secs_listener(_on_duration)
    monitoring.register_event_time_span_listener(_on_span)
    monitoring.register_event_listener(_on_event)
    _installed = True


def snapshot() -> dict:
  """The running totals now (pass to `since`)."""
  with _lock:
    return {'time': time.time(), 'counts': dict(_counts),
            'spans': {event: list(spans) for event, spans in _spans.items()}}


def since(before: dict, top: int = 10) -> dict:
  """Programs compiled, cache hits, traces and seconds (trace, lower, backend) since `before`,
  the `top` functions traced more than once at the top level ({name: traces}), and the
  programs programs.py read from disk or traced and kept."""
  now = snapshot()

  def delta(kind, key):
    return now[kind].get(key, 0) - before[kind].get(key, 0)

  hits = delta('counts', CACHE_HIT)
  traces = _top_level(now['spans'].get(TRACE, []), before['time'], now['spans'].get(LOWER, []))
  twice = sorted(((n, name) for name, n in traces.items() if n > 1), reverse=True)[:top]
  out = {'programs_compiled': delta('counts', BACKEND) - hits, 'cache_hits': hits,
         'traces': delta('counts', TRACE)}
  out.update({name: round(_covered(now['spans'].get(event, []), before['time']), 3)
              for event, name in SECONDS.items()})
  out['traced_more_than_once'] = {name: n for n, name in twice}
  out.update({name: delta('counts', event) for event, name in PROGRAM_EVENTS.items()})
  return out

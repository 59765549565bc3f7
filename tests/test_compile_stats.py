"""compile_stats counts what JAX traced and compiled, from JAX's own events."""

import chex
import jax
import numpy as np

from apb_jax import compile_stats


def test_counts_one_program_per_new_shape_and_names_the_retraced_function():
  compile_stats.install()
  compile_stats.install()                       # twice: still one listener, counts not doubled
  x3, x5 = np.ones(3, np.float32), np.ones(5, np.float32)   # numpy: no eager jax ops

  def seventeen_times(x):
    return x * 17.0 + 1.0

  f = jax.jit(seventeen_times)
  before = compile_stats.snapshot()
  y = f(x3)
  f(x3)                                          # the same program: no trace, no compile
  once = compile_stats.since(before)             # before any other jax op (they compile too)
  chex.assert_trees_all_close(np.asarray(y), np.full(3, 18.0, np.float32))
  assert once['programs_compiled'] + once['cache_hits'] == 1, once
  assert once['traces'] >= 1 and once['trace_s'] > 0 and once['backend_s'] > 0, once
  assert once['traced_more_than_once'] == {}
  f(x5)                                          # a new shape: traced and compiled again
  twice = compile_stats.since(before)
  assert twice['programs_compiled'] + twice['cache_hits'] == 2, twice
  assert twice['traced_more_than_once'] == {'seventeen_times': 2}, twice   # not jnp's, nested
  assert compile_stats.since(compile_stats.snapshot())['traces'] == 0


def test_nested_spans_count_once():
  spans = [(0.0, 10.0, 'f'), (1.0, 2.0, 'add'), (3.0, 4.0, 'add'), (12.0, 13.0, 'f'),
           (-5.0, 1.0, 'g'), (12.5, 12.7, 'add')]
  assert compile_stats._covered(spans, since=0.0) == 11.0   # [0, 10] + [12, 13]; -5 is before
  assert compile_stats._top_level(spans, since=0.0) == {'f': 2}   # the adds ran inside f
  lowering = [(10.0, 11.5, 'f'), (13.5, 15.0, 'f')]
  assert compile_stats._top_level(spans + [(11.0, 11.2, 'xor')], 0.0, lowering) == {'f': 2}

"""Task families: `names()` lists them, `make(name, **overrides)` builds one.

    family = apb_jax.tasks.make('ant_goal')            # mjx backend, 200 steps
    tasks = family.sample(jax.random.PRNGKey(0), 8, 'test_ood')
    state = jax.vmap(family.env.reset)(jax.random.split(rng, 8), tasks)
"""

from __future__ import annotations

import functools
import inspect

from apb_jax.tasks.base import SPLITS, TaskEnv, TaskFamily, TaskParams
from apb_jax.tasks.families import BUILDERS, DEFAULT_BACKEND, EPISODE_LENGTH

BACKENDS = ('mjx', 'generalized', 'positional', 'spring')

__all__ = ['names', 'make', 'TaskEnv', 'TaskFamily', 'TaskParams', 'SPLITS',
           'BACKENDS', 'DEFAULT_BACKEND', 'EPISODE_LENGTH']


def names() -> list[str]:
  """The registered family names, in the order of DESIGN.md."""
  return list(BUILDERS)


@functools.lru_cache(maxsize=None)
def _make_cached(name: str, overrides: tuple) -> TaskFamily:
  return BUILDERS[name](**dict(overrides))


def make(name: str, **overrides) -> TaskFamily:
  """Builds family `name`; overrides: `backend`, `episode_length`.

  Families are immutable and cached, so calling `make` twice with the same
  arguments returns the same object (and jitted functions keyed on its env
  are shared).
  """
  if name not in BUILDERS:
    raise ValueError(
        f'unknown task family {name!r}; choose one of {names()}.')
  allowed = inspect.signature(BUILDERS[name]).parameters
  for key in overrides:
    if key not in allowed:
      raise ValueError(
          f'unknown override {key!r} for task family {name!r}; valid '
          f'overrides are {sorted(allowed)}.')
  backend = overrides.get('backend', DEFAULT_BACKEND)
  if backend not in BACKENDS:
    raise ValueError(
        f'unknown backend {backend!r}; choose one of {list(BACKENDS)}.')
  return _make_cached(name, tuple(sorted(overrides.items())))

"""Declared config fields: each holds its default, its type and its valid values.

    FIELDS = {'seed': Int(0, low=0), 'rl': {'lr': Real(3e-4, above=0), ...}, ...}
    config = defaults(FIELDS)          # an ml_collections.ConfigDict of the defaults
    problems(config, FIELDS)           # ['--config.rl.lr=-1.0 must be a float > 0; e.g. ...']

`problems` walks the whole config and returns one line per violation (an
unknown field, a missing one, a wrong type, a value out of range), each
naming the flag, what it must be and a valid example (the declared default).
The fields of the experiment config are declared in `apb_jax/config_fields.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import ml_collections


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field. `rule(value)` is None when `value` is valid, else what it must be."""
  default: Any

  def rule(self, value) -> Optional[str]:
    raise NotImplementedError

  def example(self) -> str:
    return str(self.default)


def csv(text: str) -> list[str]:
  """'apb, scratch,' -> ['apb', 'scratch']: the names of a comma-separated field."""
  return [x.strip() for x in str(text).split(',') if x.strip()]


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _bounds(low, high, above) -> str:
  """'>= 1', '> 0', 'in [0, 1]', 'in (0, 1]', '<= 5' or ''."""
  lo = above if above is not None else low
  if high is not None:
    return f'in {"(" if above is not None else "["}{lo:g}, {high:g}]' if lo is not None else (
        f'<= {high:g}')
  if lo is None:
    return ''
  return f'{">" if above is not None else ">="} {lo:g}'


@dataclasses.dataclass(frozen=True)
class Int(Field):
  low: Optional[int] = None
  high: Optional[int] = None

  def rule(self, value):
    bad = (not _is_int(value) or (self.low is not None and value < self.low)
           or (self.high is not None and value > self.high))
    return f'an int {_bounds(self.low, self.high, None)}'.rstrip() if bad else None


@dataclasses.dataclass(frozen=True)
class Real(Field):
  """A float; `above`: strictly greater than (e.g. 0 for a learning rate)."""
  low: Optional[float] = None
  high: Optional[float] = None
  above: Optional[float] = None

  def rule(self, value):
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
          and (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
          and (self.above is None or value > self.above))
    return None if ok else f'a float {_bounds(self.low, self.high, self.above)}'.rstrip()


@dataclasses.dataclass(frozen=True)
class Flag(Field):
  def rule(self, value):
    return None if isinstance(value, bool) else 'True or False'


@dataclasses.dataclass(frozen=True)
class Text(Field):
  def rule(self, value):
    return None if isinstance(value, str) else 'a string'


@dataclasses.dataclass(frozen=True)
class Choice(Field):
  choices: tuple = ()

  def rule(self, value):
    return None if value in self.choices else f'one of {list(self.choices)}'


@dataclasses.dataclass(frozen=True)
class Names(Field):
  """A non-empty comma-separated list of names from `choices`, each at most once."""
  choices: tuple = ()

  def rule(self, value):
    names = csv(value) if isinstance(value, str) else []
    ok = names and all(n in self.choices for n in names) and len(set(names)) == len(names)
    return None if ok else f'a comma-separated list of distinct names from {list(self.choices)}'


@dataclasses.dataclass(frozen=True)
class Widths(Field):
  """Hidden-layer widths: a non-empty tuple of ints >= 1."""

  def rule(self, value):
    ok = (isinstance(value, (tuple, list)) and len(value) > 0
          and all(_is_int(w) and w >= 1 for w in value))
    return None if ok else 'a non-empty tuple of ints >= 1'

  def example(self):
    return f"'{tuple(self.default)}'"


def defaults(fields: dict) -> ml_collections.ConfigDict:
  """The ConfigDict of every declared field's default (groups become nested ConfigDicts)."""
  return ml_collections.ConfigDict({
      name: defaults(f) if isinstance(f, dict) else
      (tuple(f.default) if isinstance(f.default, (list, tuple)) else f.default)
      for name, f in fields.items()})


def problems(config, fields: dict, prefix: str = '') -> list[str]:
  """One line per field of `config` that is unknown, missing or invalid under `fields`."""
  out = []
  given = dict(config.items())
  for name, value in given.items():
    flag = f'--config.{prefix}{name}'
    if name not in fields:
      out.append(f'{flag} is not a config field; the fields and their defaults are in '
                 'apb_jax/config_fields.py.')
      continue
    field = fields[name]
    if isinstance(field, dict):
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        out += problems(value, field, f'{prefix}{name}.')
      else:
        out.append(f'{flag}={value!r} must be a group of fields {sorted(field)}.')
      continue
    must = field.rule(value)
    if must is not None:
      out.append(f'{flag}={value} must be {must}; e.g. {flag}={field.example()}')
  for name in fields:
    if name not in given:
      out.append(f'--config.{prefix}{name} is missing; build the config from '
                 'experiments/configs/<family>.py.')
  return out

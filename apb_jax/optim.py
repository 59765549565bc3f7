"""Which parameter leaves train: optax partitions over the APB layout.

`adapters_only(tx)` applies `tx` to every leaf under an `'adapters'` key and
freezes every leaf under a `'backbone'` key: frozen leaves get zero updates
and, because `optax.partition` masks each inner transform, `tx` allocates no
state (no Adam moments) for them. A leaf under neither key is an error, so a
new sub-tree can never be silently trained or silently frozen.

`all_params(tx)` trains everything (the `scratch` and `finetune` methods).

Labels are read from tree paths (`jax.tree_util.tree_map_with_path`), so both
plain dicts and flax `FrozenDict`s work, at any nesting depth (e.g. a
`[task]`-batched tree inside a larger learner state).
"""

from __future__ import annotations

import math

import jax
import optax

TRAIN, FREEZE = 'train', 'freeze'


def _key_name(entry) -> str | None:
  return getattr(entry, 'key', None)


def trainable_labels(params, frozen=()):
  """Same-structure tree of 'train' (under 'adapters') / 'freeze' (under 'backbone', or under
  'adapters' -> a key in `frozen`: the adapter keys an adapter form keeps fixed, e.g. ('out',))."""

  def label(path, _):
    names = [_key_name(p) for p in path]
    if 'backbone' in names:
      return FREEZE
    if 'adapters' in names:
      below = names[names.index('adapters') + 1:]
      return FREEZE if below and below[0] in frozen else TRAIN
    raise ValueError(
        f'parameter {jax.tree_util.keystr(path)} is under neither a '
        "'backbone' nor an 'adapters' key; lay params out as "
        "{'backbone': ..., 'adapters': ...} (see apb_jax.policy).")

  return jax.tree_util.tree_map_with_path(label, params)


def adapters_only(tx: optax.GradientTransformation,
                  frozen=()) -> optax.GradientTransformation:
  """`tx` on adapter leaves; backbone leaves (and the adapter keys in `frozen`, see
  policy.frozen_adapters) frozen and stateless."""
  return optax.partition({TRAIN: tx, FREEZE: optax.set_to_zero()},
                         lambda params: trainable_labels(params, frozen))


def count_trainable(params, frozen=()) -> int:
  """How many scalars `adapters_only(tx, frozen)` trains in `params` (one run's tree)."""
  labels = jax.tree.leaves(trainable_labels(params, frozen))
  return sum(math.prod(x.shape) for x, label in zip(jax.tree.leaves(params), labels, strict=True)
             if label == TRAIN)


def all_params(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` on every leaf (full training / fine-tuning)."""
  return tx

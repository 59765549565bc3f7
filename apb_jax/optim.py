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

import jax
import optax

TRAIN, FREEZE = 'train', 'freeze'


def _key_name(entry) -> str | None:
  return getattr(entry, 'key', None)


def trainable_labels(params):
  """Same-structure tree of 'train' (under 'adapters') / 'freeze' (under 'backbone')."""

  def label(path, _):
    names = [_key_name(p) for p in path]
    if 'backbone' in names:
      return FREEZE
    if 'adapters' in names:
      return TRAIN
    raise ValueError(
        f'parameter {jax.tree_util.keystr(path)} is under neither a '
        "'backbone' nor an 'adapters' key; lay params out as "
        "{'backbone': ..., 'adapters': ...} (see apb_jax.policy).")

  return jax.tree_util.tree_map_with_path(label, params)


def adapters_only(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` on adapter leaves; backbone leaves frozen and stateless."""
  return optax.partition({TRAIN: tx, FREEZE: optax.set_to_zero()},
                         trainable_labels)


def all_params(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` on every leaf (full training / fine-tuning)."""
  return tx

"""Orbax checkpoints of a run directory (the JSON files beside them: apb_jax.files).

A run directory holds, for each stage, either its finished result (a small
JSON file under `results/`, written last and atomically, which marks the stage
done) or, while it runs, the learner's latest state under
`checkpoints/<stage>/` (orbax; the newest step only). The backbone a run
produces is saved on its own under `checkpoints/backbone/`, so another run can
restore it without anything else (`restore_backbone`).

Saves are synchronous and orbax writes each step into a temporary directory
that it renames when complete, so a `kill -9` leaves either the previous or
the new checkpoint, never half of one.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from apb_jax import files, hosts


def _manager(directory: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False))


class StageCheckpoints:
  """The newest learner state of one running stage: (state, chunks_done, curves).

  `save(chunks_done, state, curves, **extra)` matches the trainers'
  `checkpoint_fn`; `extra` (JSON values, e.g. seconds spent so far) is saved
  in the same atomic step. `restore(like)` returns `(resume, extra)`: the
  `resume` tuple the trainers take, or `(None, {})` when the stage has not
  checkpointed yet. `like` is a state of the right structure (e.g.
  `jax.eval_shape` of the trainer's init).
  """

  def __init__(self, directory: str):
    self.directory = directory
    self._manager = _manager(directory)

  def save(self, chunks_done: int, state, curves, **extra) -> None:
    meta = {'chunks_done': int(chunks_done),
            'curves': [np.asarray(c, np.float64).tolist() for c in curves], 'extra': extra}
    self._manager.save(chunks_done, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_sized_leaves(state)), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def restore(self, like: Callable[[], Any]) -> tuple[Optional[tuple], dict]:
    """`like()` gives the state's structure (e.g. an eval_shape of the learner's init, which
    traces it): called only when there is a checkpoint to restore. A checkpoint that cannot be
    restored raises RunFileError naming the directory and the fix (delete it: the stage starts
    again from its beginning)."""
    try:
      step = self._manager.latest_step()
    except Exception as e:     # orbax raises many kinds (ValueError, KeyError, OSError, ...)
      raise self._unreadable(e) from None
    if step is None:
      return None, {}
    structure = like()
    try:
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _sized_leaves(structure))
      out = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
      leaves, treedef = jax.tree.flatten(structure)
      state = jax.tree.unflatten(treedef, [
          out.state[str(i)] if _size(x) else np.zeros(x.shape, x.dtype)
          for i, x in enumerate(leaves)])
      curves = [np.asarray(c, np.float32) for c in out.meta['curves']]
      return (state, out.meta['chunks_done'], curves), out.meta['extra']
    except Exception as e:
      raise self._unreadable(e) from None

  def _unreadable(self, e: Exception) -> files.RunFileError:
    return files.RunFileError(
        f'{self.directory} holds a checkpoint that cannot be restored ({files.first_line(e)}); '
        'delete that directory to start the stage again from its beginning.')

  def remove(self) -> None:
    """Deletes the stage's checkpoints (once its result is written)."""
    self._manager.close()
    files.remove_tree(self.directory)


def _size(x) -> int:
  return int(np.prod(x.shape))


def _sized_leaves(tree) -> dict:
  """{leaf index: leaf} without the zero-size leaves (orbax cannot write them; mjx has some)."""
  return {str(i): x for i, x in enumerate(jax.tree.leaves(tree)) if _size(x)}


def save_params(directory: str, params) -> None:
  """Saves a params pytree (e.g. the backbone) on its own, replacing any previous one."""
  directory = os.path.abspath(directory)
  files.remove_tree(directory)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory, hosts.to_host(params))
  checkpointer.wait_until_finished()


def restore_params(directory: str, fix: str = 'start a new --workdir'):
  """Restores a params pytree saved by `save_params`, without knowing its shapes first;
  RunFileError naming `directory` and `fix` if it cannot."""
  try:
    return ocp.StandardCheckpointer().restore(os.path.abspath(directory))
  except Exception as e:     # orbax raises many kinds (ValueError, FileNotFoundError, ...)
    raise files.RunFileError(f'{directory} holds no params that can be restored '
                             f'({files.first_line(e)}); {fix}.') from None

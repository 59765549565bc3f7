"""What the tasks of one learner share, and the actor update that can move it.

`Shared(backbone, backbone_opt)` is an unbatched argument of the task-vmapped
code (every learner: SAC, TD3, PPO):
  * mode 'adapters': the frozen backbone, closed over by the losses, so no
    gradient or optimiser ever sees it;
  * mode 'all': unused; every task's actor holds its own backbone copy;
  * mode 'shared' (meta-training): one backbone for all tasks. Each task's
    actor loss is differentiated with respect to its adapters and the shared
    backbone; the backbone gradient is `pmean`ed over the named task axis
    (`TASK_AXIS`, which the caller's vmap must name), so the one shared copy
    moves by the mean of the per-task gradients;
  * mode 'tied' (PPO only; RL^2's meta-training): ONE policy for all tasks.
    Every task holds a copy of the whole actor, the copies start equal and
    their gradient is `pmean`ed over the task axis before the (identical)
    optimiser steps, so they stay equal: the update of a single policy
    trained on the mean loss over tasks. `shared` is unused.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax
from flax import struct

from apb_jax import optim

TASK_AXIS = 'task'   # the named vmap axis over tasks (modes 'shared', 'tied' reduce over it)
WHOLE_ACTOR_MODES = ('all', 'tied')   # the per-task actor holds the backbone too


@struct.dataclass
class Shared:
  """What every task uses: the backbone and, in mode 'shared', its optimiser state."""

  backbone: Any
  backbone_opt: Any = ()


def init(backbone, tx: optax.GradientTransformation, mode: str) -> Shared:
  return Shared(backbone=backbone, backbone_opt=tx.init(backbone) if mode == 'shared' else ())


def actor_tx(tx: optax.GradientTransformation, mode: str,
             frozen=()) -> optax.GradientTransformation:
  """The per-task actor optimiser: `tx` on every leaf in modes 'all' and 'tied', else on the
  adapters only, less the adapter keys in `frozen` (policy.frozen_adapters)."""
  return optim.all_params(tx) if mode in WHOLE_ACTOR_MODES else optim.adapters_only(tx, frozen)


def actor_update(actor, actor_opt, shared: Shared, loss_fn: Callable, tx, mode: str,
                 frozen=()):
  """One step of `tx` on `loss_fn(actor, backbone) -> (loss, aux)`, for one task.

  Returns `(actor, actor_opt, shared, loss, aux)`. In mode 'shared' the
  backbone also steps, by the task-mean of its gradient; in mode 'tied' the
  whole actor steps by the task-mean gradient.
  """
  if mode == 'shared':
    (loss, aux), (grads, g_backbone) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(actor, shared.backbone)
    g_backbone = jax.lax.pmean(g_backbone, TASK_AXIS)
    b_updates, b_opt = tx.update(g_backbone, shared.backbone_opt, shared.backbone)
    shared = Shared(backbone=optax.apply_updates(shared.backbone, b_updates),
                    backbone_opt=b_opt)
  else:
    (loss, aux), grads = jax.value_and_grad(
        lambda actor: loss_fn(actor, shared.backbone), has_aux=True)(actor)
    if mode == 'tied':
      grads = jax.lax.pmean(grads, TASK_AXIS)
  updates, actor_opt = actor_tx(tx, mode, frozen).update(grads, actor_opt, actor)
  return optax.apply_updates(actor, updates), actor_opt, shared, loss, aux

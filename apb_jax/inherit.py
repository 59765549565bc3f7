"""What adaptation inherits from meta-training, saved beside the backbone it belongs to.

Meta-training (route 'rl' or 'bc') starts every train task's adapters from one adapter
**origin** (`--config.adapt.adapters=origin`, the default), so the backbone learns in
one coordinate system; every adaptation run starts from the same origin (`apb`,
`apb_randominit`, `scratch`, `finetune`, `oracle`), or from the **mean** of the
meta-trained train adapters (`apb_warm`). Independent random adapters per task (`independent`,
the protocol before issue 29) hand a new task a projection the backbone never saw:
cheetah_dir's train task reached 631.6 in meta-training and its adaptation started at 0.0.

    checkpoints/backbone/         {'backbone':       {'dense_l': ...},
                                   'adapter_origin': adapters (unbatched; 'origin' only),
                                   'adapter_mean':   adapters (unbatched),
                                   'obs_stats':      {'mean', 'm2', 'count'} merged over tasks}
    checkpoints/critic_backbone/  {'backbone': twin [2, ...], 'adapter_origin', 'adapter_mean'}
                                  (with --config.adapt.critic=meta[_finetune])

`--config.backbone_from` reads both from another run directory, so a reused backbone
arrives with its origin, mean and statistics. A backbone carried to **another robot** (a
family whose observation or action size differs from the source's) keeps only the frozen
backbone (and critic backbone): the source's origin, mean and statistics cannot fit the new
sizes, so its runs start from this run's own origin and fresh statistics, and `apb_warm`
(which starts from the mean) cannot run. `source()` names what a backbone was trained on.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from apb_jax import checkpoint, files, policy
from apb_jax.learners import networks, normalizer

ACTOR, CRITIC = 'backbone', 'critic_backbone'   # the two checkpoints under checkpoints/


def origin(rng, obs_size: int, action_size: int, config: policy.PolicyConfig):
  """The policy's adapter origin: one fresh adapter pytree (unbatched)."""
  return policy.init_adapters(rng, obs_size, action_size, config)


def critic_origin(rng, obs_size: int, action_size: int, widths):
  """The APB critic's adapter origin: one fresh twin adapter pytree (leaves [2, ...])."""
  return networks.init_critic_adapters(rng, obs_size, action_size, widths)


def task_mean(tree):
  """The mean over the leading task axis: leaves `[K, ...]` -> `[...]`."""
  return jax.tree.map(lambda x: jnp.mean(x, axis=0), tree)


def actor_inheritance(backbone, adapters, obs_stats, adapter_origin=None) -> dict:
  """What checkpoints/backbone/ holds, from meta-training's end: `adapters` leaves [K, ...]
  (the train tasks'), `obs_stats` a Normalizer with leaves [K, ...]."""
  stats = normalizer.merge(obs_stats)
  out = {'backbone': backbone, 'adapter_mean': task_mean(adapters),
         'obs_stats': {'mean': stats.mean, 'm2': stats.m2, 'count': stats.count}}
  return out if adapter_origin is None else dict(out, adapter_origin=adapter_origin)


def critic_inheritance(critic, adapter_origin=None) -> dict:
  """What checkpoints/critic_backbone/ holds: `critic` the meta-trained twin critics of the K
  train tasks ({'backbone', 'adapters'}, leaves [K, 2, ...]; the backbone's K copies are tied)."""
  out = {'backbone': jax.tree.map(lambda x: x[0], critic['backbone']),
         'adapter_mean': task_mean(critic['adapters'])}
  return out if adapter_origin is None else dict(out, adapter_origin=adapter_origin)


def fits(inheritance: dict, obs_size: int, action_size: int) -> bool:
  """Whether the adapters saved in `inheritance` (checkpoints/backbone/'s) take `obs_size`
  observations and give `action_size` actions: the source robot's sizes are this one's. A
  backbone saved before issue 29 holds no adapters (require() names the flags it needs)."""
  mean = inheritance.get('adapter_mean')
  return mean is None or (mean['in']['kernel'].shape[0] == obs_size and
          mean['out']['kernel'].shape[1] == 2 * action_size)


def source(run_dir: str, fits_here: bool) -> dict:
  """What `run_dir`'s backbone was meta-trained on (report.json's `backbone_source`): the
  family and its train tasks (from its config.json and tasks.json), and whether what was saved
  beside the backbone is carried here (`fits_here`: the same observation and action sizes)."""
  config = files.read_json(os.path.join(run_dir, 'config.json'), keys=('task',),
                           fix='give --config.backbone_from a whole run directory')
  train = files.read_json(os.path.join(run_dir, 'tasks.json'), keys=('train',),
                          fix='give --config.backbone_from a whole run directory')['train']
  return {'run': os.path.abspath(run_dir), 'family': config['task'],
          'train_tasks': train.get('params', train),
          'carried': ('backbone, adapter origin, adapter mean, observation statistics'
                      if fits_here else 'backbone only (another robot: other sizes)')}


def save(run_dir: str, name: str, inheritance: dict) -> None:
  checkpoint.save_params(os.path.join(run_dir, 'checkpoints', name), inheritance)


OLD_PROTOCOL = ('pass --config.adapt.adapters=independent --config.adapt.obs_stats=fresh, or '
                'meta-train again')


def load(run_dir: str, name: str, fix: str = 'meta-train again') -> dict:
  """checkpoints/<name>/ of `run_dir` (ACTOR or CRITIC); RunFileError naming `fix` if it
  cannot be restored."""
  return checkpoint.restore_params(os.path.join(run_dir, 'checkpoints', name), fix=fix)


def require(inheritance: dict, needs, run_dir: str, name: str) -> dict:
  """`inheritance` (checkpoints/<name>/ of `run_dir`), checked to hold the keys `needs`;
  RunFileError naming the flags of the old protocol if it does not (a backbone saved before
  meta-training shared one adapter origin holds the backbone alone)."""
  missing = [k for k in needs if k not in inheritance]
  if missing:
    raise files.RunFileError(
        f'{os.path.join(run_dir, "checkpoints", name)} holds no {", ".join(missing)} (saved '
        f'before meta-training shared one adapter origin); {OLD_PROTOCOL}.')
  return inheritance

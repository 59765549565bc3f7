"""Adaptation: fresh adapters (or a whole policy) learned on new tasks, K tasks x S seeds at once.

The methods compared on every test task (design table):

  method          backbone at the start     adapters at the start   what trains        budget
  apb             meta-trained              the origin              adapters (+critic) 1x
  apb_warm        meta-trained              mean of the train ones  adapters (+critic) 1x
  apb_randominit  random (meta-training's)  the origin              adapters (+critic) 1x
  scratch         random (meta-training's)  the origin              everything         1x
  finetune        meta-trained              the origin              everything         1x
  oracle          random (meta-training's)  the origin              everything         oracle_factor x

The adapter origin (`--config.adapt.adapters=origin`, the default; inherit.py) is one
adapter pytree that every train task starts from in meta-training and every run starts
from here: the backbone learns in one coordinate system and a new task inherits it.
`apb_warm` (our step beyond the paper) starts from the mean of the meta-trained train
adapters instead. `independent` draws fresh adapters per train task and per run (the
protocol before issue 29, kept to reproduce its numbers). With `--config.adapt.obs_stats
=meta` (the default) the methods over the meta-trained backbone also start their
observation normaliser from meta-training's statistics, merged over the train tasks.

The critic (`--config.adapt.critic`, SAC/TD3; `critic_setup`):
  fresh          every method learns a fresh twin MLP critic (the paper's protocol);
  meta           meta-training also trains one shared critic backbone (the APB
                 critic layout, learners/networks.py); `apb` freezes it and trains
                 fresh critic adapters, exactly as its actor; `apb_randominit`
                 does the same over the random critic backbone meta-training
                 started from; `finetune` starts from the meta-trained critic
                 and trains all of it;
  meta_finetune  as `meta`, but the apb methods' critic backbone trains too.
`scratch` and `oracle` (standard RL) always learn a fresh critic.

`apb_randominit` and `scratch` start from the same random backbone as
meta-training did, so `apb` vs `apb_randominit` isolates what meta-training
changed. Runs are tasks x seeds flattened task-major onto the learners' task
axis (run r = task r // S, seed r % S): one jitted call trains them all, each
with its own adapters, critic, replay and random stream; the backbone is one
shared copy (frozen in mode 'adapters'; each run's own trained copy in 'all').
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from apb_jax import policy
from apb_jax.tasks import base


@dataclasses.dataclass(frozen=True)
class Method:
  backbone: str      # 'meta' (the meta-trained backbone) or 'random'
  mode: str          # learner mode: 'adapters' or 'all'
  oracle: bool = False
  start: str = 'origin'   # adapters at the start: 'origin', or 'meta_mean' (train adapters' mean)


METHODS = {
    'apb': Method(backbone='meta', mode='adapters'),
    'apb_warm': Method(backbone='meta', mode='adapters', start='meta_mean'),
    'apb_randominit': Method(backbone='random', mode='adapters'),
    'scratch': Method(backbone='random', mode='all'),
    'finetune': Method(backbone='meta', mode='all'),
    'oracle': Method(backbone='random', mode='all', oracle=True),
}


CRITICS = ('fresh', 'meta', 'meta_finetune')   # --config.adapt.critic
ADAPTERS = ('origin', 'independent')            # --config.adapt.adapters
OBS_STATS = ('meta', 'fresh')                   # --config.adapt.obs_stats


def meta_critic_mode(critic: str) -> str:
  """The learner's critic_mode in meta-training (route 'rl') for `--config.adapt.critic`."""
  return 'mlp' if critic == 'fresh' else 'shared'


def critic_setup(method_name: str, critic: str):
  """(learner critic_mode, critic backbone source: None, 'meta' or 'random') of a method."""
  m = method(method_name)
  if critic == 'fresh' or m.backbone == 'random' and m.mode == 'all':   # scratch, oracle
    return 'mlp', None
  if m.mode == 'all':                                                   # finetune
    return 'all', 'meta'
  return ('adapters' if critic == 'meta' else 'all'), m.backbone


def method(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f'unknown method {name!r}; choose from {list(METHODS)} '
                     '(e.g. --config.methods=apb,scratch).')
  return METHODS[name]


def repeat_tasks(tasks, seeds: int):
  """Task params `[K, ...]` -> `[K * seeds, ...]`, task-major (each task `seeds` times)."""
  return jax.tree.map(lambda x: jnp.repeat(x, seeds, axis=0), tasks)


def init_params(rng, backbone, n_runs: int, obs_size: int, action_size: int,
                config: policy.PolicyConfig, start=None):
  """`{'backbone': backbone, 'adapters': leaves [n_runs, ...]}`: every run starts from the
  adapters `start` (the origin, or the train adapters' mean), or, with `start` None, from
  fresh adapters of its own drawn from `rng`."""
  if start is not None:
    return {'backbone': backbone, 'adapters': base.tile(start, n_runs)}
  adapters = jax.vmap(lambda k: policy.init_adapters(k, obs_size, action_size, config))(
      jax.random.split(rng, n_runs))
  return {'backbone': backbone, 'adapters': adapters}


def check_backbone(backbone, config: policy.PolicyConfig, source: str) -> None:
  """Raises a one-line error if `backbone` does not have `config.widths`."""
  widths = (*[backbone[f'dense_{i}']['kernel'].shape[0] for i in range(len(backbone))],
            backbone[f'dense_{len(backbone) - 1}']['kernel'].shape[1]) if backbone else ()
  if tuple(widths) != tuple(config.widths):
    raise ValueError(
        f'the backbone from {source} has widths {tuple(widths)} but this config has '
        f'policy.widths={tuple(config.widths)}; pass --config.policy.widths="{tuple(widths)}" '
        'or use a backbone trained with these widths.')

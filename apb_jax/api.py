"""Two calls for Python: meta-train a backbone, then adapt it to tasks.

    from apb_jax import api
    from experiments.configs import cheetah_vel            # or config_fields.defaults()
    config = cheetah_vel.get_config('smoke')
    meta = api.meta_train(config, 'runs/cv')                # MetaTrained
    out = api.adapt(config, 'runs/cv_new', tasks={'target_vel': jnp.array([1.5, 2.5])},
                    backbone_from='runs/cv')                # Adapted, one run per task x seed
    action = api.act(out, obs, run=0)                       # obs: [..., obs_size]

Both run the launcher's own stages (experiment.Experiment: the same learner programs, keys,
result files and checkpoints as `make experiment`), in a run directory, so a call killed
midway resumes when called again with the same arguments, and `experiments.summarize` reads
the directory like any other. `config` is the launcher's ConfigDict (config_fields.py);
keyword `fields` override it (dotted names as on the command line:
`**{'adapt.total_steps': 4096}`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

from apb_jax import adapt as adapt_lib
from apb_jax import experiment, inherit, policy
from apb_jax.learners import normalizer


@dataclasses.dataclass(frozen=True)
class MetaTrained:
  """What meta-training hands to adaptation (inherit.py), with its learning curves.

  backbone: {'dense_l': {'kernel', 'bias'}}; adapter_origin, adapter_mean: adapters
  (unbatched); obs_stats: {'mean', 'm2', 'count'} merged over the train tasks;
  steps: [n_evals] env steps per task; curves: [train tasks, n_evals] eval returns.
  """
  backbone: Any
  adapter_origin: Any
  adapter_mean: Any
  obs_stats: Any
  steps: np.ndarray
  curves: np.ndarray


@dataclasses.dataclass(frozen=True)
class Adapted:
  """One adaptation stage's outcome; runs are tasks x seeds, task-major (run r: task r // seeds).

  params: {'backbone': ..., 'adapters': leaves [runs, ...]} (the backbone unbatched where it
  was frozen, [runs, ...] where it trained); obs_stats: normalizer.Normalizer, leaves
  [runs, ...] (the policy sees normalised observations when config.rl.normalize_obs);
  steps: [n_evals]; curves: [runs, n_evals]; None where the stage had finished in `workdir`
  before this call (its curves are in results/, its params were not kept).
  """
  method: str
  split: str
  policy: policy.PolicyConfig
  normalize_obs: bool       # whether the policy was trained on normalised observations
  trainable_params: int     # policy scalars one run trains
  params: Any
  obs_stats: Any
  steps: np.ndarray
  curves: np.ndarray


def _with(config, fields: Mapping):
  config = config.copy_and_resolve_references()
  for name, value in fields.items():
    group, _, field = name.rpartition('.')
    target = config
    for part in filter(None, group.split('.')):
      target = target[part]
    target[field] = value
  return config


def meta_train(config, workdir: str, family=None, show_progress: bool = True,
               **fields) -> MetaTrained:
  """Meta-trains a backbone on `config`'s family (its train split; config.meta.*), or reads
  it back where `workdir` holds it."""
  exp = experiment.Experiment(_with(config, fields), workdir, show_progress, family)
  saved = exp.inherited(inherit.ACTOR, 'adapter_mean', 'obs_stats')
  result = exp.result('meta_train')
  return MetaTrained(backbone=saved['backbone'], adapter_origin=saved.get('adapter_origin'),
                     adapter_mean=saved['adapter_mean'], obs_stats=saved['obs_stats'],
                     steps=np.asarray(result['steps']), curves=np.asarray(result['curves']))


def adapt(config, workdir: str, method: str = 'apb', tasks=None, split: str = 'test_id',
          backbone_from: str = '', family=None, show_progress: bool = True,
          **fields) -> Adapted:
  """Adapts with `method` (adapt.METHODS: apb trains the adapters over the meta-trained
  backbone, scratch the whole network, ...) to `tasks` (TaskParams, leaves [n, ...]; default
  `split`'s tasks sampled from config.seed), config.adapt.seeds runs per task. A method over
  the meta-trained backbone reads it from `backbone_from` (a run directory: meta_train's),
  or meta-trains one in `workdir` first."""
  changes = dict(fields, methods=method, splits=split, backbone_from=backbone_from)
  if tasks is not None:
    changes['adapt.num_tasks'] = int(jax.tree.leaves(tasks)[0].shape[0])
  config = _with(config, changes)
  adapt_lib.method(method)                     # one line naming the methods, if unknown
  exp = experiment.Experiment(config, workdir, show_progress, family,
                              task_sets=None if tasks is None else {split: tasks})
  stage = f'adapt_{method}_{split}'
  learner = exp.adapt_learner(method)
  state = None
  if not exp.done(stage):
    runs = config.adapt.num_tasks * config.adapt.seeds
    state = exp.stacked_stage([(stage, method, split)], learner,
                              exp.start_params(method, split, runs))
  result = exp.result(stage)
  params = stats = None
  if state is not None:
    actor = state.agent.actor
    params = {'backbone': actor.get('backbone', state.shared.backbone),
              'adapters': actor['adapters']}
    stats = state.agent.obs_stats
  return Adapted(method=method, split=split, policy=learner.policy,
                 normalize_obs=learner.normalize_obs,
                 trainable_params=exp.trainable_params(method), params=params,
                 obs_stats=stats, steps=np.asarray(result['steps']),
                 curves=np.asarray(result['curves']))


def act(adapted: Adapted, obs, run: int = 0):
  """The deterministic action [..., action_size] of run `run` of `adapted` for `obs`
  [..., obs_size], normalised by the run's statistics where training normalised them."""
  def pick(x):
    return x[run]

  backbone = adapted.params['backbone']
  if backbone['dense_0']['kernel'].ndim == 3:     # trained per run: [runs, d_in, d_out]
    backbone = jax.tree.map(pick, backbone)
  adapters = jax.tree.map(pick, adapted.params['adapters'])
  if adapted.normalize_obs:
    obs = normalizer.normalize(jax.tree.map(pick, adapted.obs_stats), obs)
  return policy.apply(backbone, adapters, obs, adapted.policy).action

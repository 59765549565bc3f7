"""Adapt a meta-trained hopper backbone to a hopper it never saw, from Python; plot it.

    python -m examples.adapt_new_task --workdir=runs/example [--task_seed=7 --split=test_ood]
    python -m examples.adapt_new_task --workdir=runs/example_fresh --fresh   # meta-train too

Two calls of apb_jax.api. `meta_train` gives the backbone: by default it reads back the one
`make experiment TASK=hopper_params ARGS=--config.methods=apb` meta-trained (8 hoppers with
other masses, inertias, frictions and dampings, x 61,440 env steps; 12 min alone on a 2-core
CPU), kept under experiments/measured/runs/ and copied into --workdir; with --fresh it
meta-trains a small one itself (the smoke profile's 32x32 backbone, a few minutes, too short
to carry much). `adapt` then trains, for one newly sampled hopper, `apb_warm` (only the
linear adapters, starting from the meta-trained adapters' mean) and `apb` (only the adapters,
from the adapter origin), the backbone frozen in both, against `scratch` (the whole network
from a random start). A few minutes on a 2-core CPU, most of it compiling; rerunning
resumes from --workdir.
"""

from __future__ import annotations

import os
import shutil

from absl import app, flags, logging
import jax
from matplotlib.figure import Figure

from apb_jax import api, tasks
from experiments.configs import hopper_params

KEPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    'experiments', 'measured', 'runs', 'hopper_params_apb_2026-12-06')

_WORKDIR = flags.DEFINE_string('workdir', 'runs/example', 'where the runs live')
_TASK_SEED = flags.DEFINE_integer('task_seed', 7, 'samples the new hopper')
_SPLIT = flags.DEFINE_enum('split', 'test_id', ['test_id', 'test_ood'], 'whose distribution '
                           'the new hopper comes from (test_ood: log-scales beyond training)')
_STEPS = flags.DEFINE_integer('steps', 10_240, 'adaptation budget, env steps (x 1,024)')
_FRESH = flags.DEFINE_bool('fresh', False, 'meta-train a small backbone instead of reading '
                           'the kept one')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  meta_dir = os.path.join(_WORKDIR.value, 'meta')
  if _FRESH.value:
    config = hopper_params.get_config('smoke')
    meta = api.meta_train(config, meta_dir)
  else:
    config = hopper_params.get_config('default')
    if not os.path.exists(meta_dir):
      shutil.copytree(KEPT, meta_dir)
    meta = api.meta_train(config, meta_dir, methods='apb')   # the kept run's flags
  print(f'backbone meta-trained on {meta.curves.shape[0]} hoppers: train return '
        f'{meta.curves[:, 0].mean():.1f} -> {meta.curves[:, -1].mean():.1f}')
  config.adapt.update(total_steps=_STEPS.value, eval_every=1024, seeds=1)
  task = tasks.make('hopper_params').sample(jax.random.PRNGKey(_TASK_SEED.value), 1,
                                             _SPLIT.value)
  fig = Figure(figsize=(5.5, 3.5))
  ax = fig.add_subplot()
  for method in ('apb_warm', 'apb', 'scratch'):
    out = api.adapt(config, os.path.join(_WORKDIR.value, method), method=method, tasks=task,
                    split=_SPLIT.value, backbone_from=meta_dir)
    print(f'{method}: trains {out.trainable_params:,} params; eval return '
          f'{out.curves[0, 0]:.1f} -> {out.curves[0, -1]:.1f}')
    ax.plot(out.steps, out.curves[0], label=f'{method} ({out.trainable_params:,} params)')
  ax.set(xlabel='env steps', ylabel='eval return',
         title=f'a new hopper ({_SPLIT.value}, task seed {_TASK_SEED.value})')
  ax.legend()
  path = os.path.join(_WORKDIR.value, 'adapt_new_task.png')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  print(f'curve: {path}')


if __name__ == '__main__':
  app.run(main)

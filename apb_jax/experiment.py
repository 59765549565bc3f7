"""The APB experiment in one run directory: meta_train -> adapt (each method, each split) -> report.

    report = experiment.run(config, workdir)     # config: ml_collections, see experiments/configs

Stages and what marks them done (files under `workdir`):
  meta_train           results/meta_train.json, checkpoints/backbone/ (the backbone alone;
                       with --config.adapt.critic=meta[_finetune] also checkpoints/critic_backbone/)
                       route 'bc': results/meta_experts.json first, then the distillation
  random_return        results/random_return.json
  adapt_<method>_<split>  results/adapt_<method>_<split>.json (curves, timing)
  report               report.json, report.md, *.png
A stage whose result file exists is never run again. A running learner stage
checkpoints its whole state after every evaluation (checkpoints/<stage>/,
orbax); after a kill, the same command resumes it from there. Every random
draw derives from `config.seed` and the stage's name, so on CPU a resumed run
writes the same report.json as an uninterrupted one (timing aside).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time
import zlib

import jax
import numpy as np

from apb_jax import (adapt, baselines, checkpoint, estimate, evaluation, files, meta_train, policy,
                     report)
from apb_jax import tasks
from apb_jax.learners import make_train, networks
from apb_jax.metrics import MetricsLog
from apb_jax.run_config import (SPLITS, csv, learner_config, needs_meta_backbone, policy_config,
                                validate)

__all__ = ['Experiment', 'run', 'validate', 'learner_config', 'policy_config', 'SPLITS']
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'chex', 'orbax-checkpoint', 'brax', 'mujoco',
            'mujoco-mjx', 'numpy', 'ml-collections', 'absl-py', 'matplotlib')
RANDOM_EPISODES = 16


def _key(config, name: str):
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), zlib.crc32(name.encode()))


def versions() -> dict:
  out = {p: _version(p) for p in PACKAGES}
  out.update(python=platform.python_version(), platform=platform.platform(),
             backend=jax.default_backend(), devices=[d.device_kind for d in jax.devices()])
  return out


def _version(package):
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


class Experiment:
  """One run directory; `run()` does every stage that is not done yet."""

  def __init__(self, config, workdir: str, show_progress: bool = True, family=None):
    """`family`: a TaskFamily to use instead of `tasks.make(config.task)` (tests, new families)."""
    validate(config, check_task=family is None,
             episode_length=family.episode_length if family else tasks.EPISODE_LENGTH)
    self.config, self.dir, self.show_progress = config, os.path.abspath(workdir), show_progress
    self.methods = csv(config.methods)
    self.splits = csv(config.splits)
    self._trainers = {}
    self._last_chunk, self.estimate_line = None, None   # see _estimate
    found = self._read_dir()              # before the family is built: errors come at once
    self.family = family or tasks.make(config.task)
    self._prepare_dir(*found)
    self.log = MetricsLog(self.dir)

  # -- the run directory ------------------------------------------------------------
  def path(self, *parts):
    return os.path.join(self.dir, *parts)

  def key(self, name: str):
    """The random key of stage part `name` (derived from config.seed and the name)."""
    return _key(self.config, name)

  def _read_dir(self):
    """Checks the run directory and every file already in it; returns (config.json,
    tasks.json, versions.json) as found (None where absent). Writes nothing."""
    _check_workdir(self.dir)
    old = self._read_if_there('config.json')
    if old is not None:
      diff = sorted(_flat_diff(old, self._config_json()))
      if diff:
        raise ValueError(
            f'{self.dir} holds a run with another config ({"; ".join(diff[:3])}); rerun with '
            'the same flags to resume it, or pass a new --workdir.')
    saved = self._read_if_there('tasks.json', keys=('train', *SPLITS))
    old_versions = self._read_if_there('versions.json')
    for name in sorted(os.listdir(self.path('results'))) if os.path.isdir(
        self.path('results')) else []:
      if name.endswith('.json'):
        self.result(name[:-len('.json')])
    return old, saved, old_versions

  def _prepare_dir(self, old, saved, old_versions):
    """The task sets (read back, or sampled and written), config.json and versions.json: a
    run that stops here has changed nothing that was written before."""
    if saved is not None:
      self.tasks = self._tasks_from(saved)
    os.makedirs(self.dir, exist_ok=True)
    if old is None:
      files.write_json(self.path('config.json'), self._config_json())
    if saved is None:
      sets = {split: json.loads(self.family.tasks_to_json(
          self.family.sample(_key(self.config, f'tasks/{split}'), n, split), split))
              for split, n in (('train', self.config.meta.num_tasks),
                               *((s, self.config.adapt.num_tasks) for s in SPLITS))}
      files.write_json(self.path('tasks.json'), sets)
      self.tasks = self._tasks_from(sets)
    now = versions()
    if old_versions is None:
      files.write_json(self.path('versions.json'), now)
    elif now != {k: v for k, v in old_versions.items() if k != 'resumed_with'} and now not in (
        old_versions.get('resumed_with', [])):     # a resume on other software: keep both
      files.write_json(self.path('versions.json'), dict(
          old_versions, resumed_with=[*old_versions.get('resumed_with', []), now]))

  def _config_json(self) -> dict:
    return json.loads(self.config.to_json_best_effort())

  def _read_if_there(self, name, keys=()):
    """A top-level JSON file of the run directory, or None if absent (RunFileError if bad)."""
    path = self.path(name)
    if not os.path.exists(path):
      return None
    return files.read_json(path, fix=f'restore {name} or start a new --workdir', keys=keys)

  def _tasks_from(self, sets) -> dict:
    """Task sets from tasks.json's content, checked against the family's task params."""
    like = self.family.sample(jax.random.PRNGKey(0), 1, 'train')
    try:
      out = {split: self.family.tasks_from_json(json.dumps(v)) for split, v in sets.items()}
      for split, params in out.items():
        shapes = {k: tuple(v.shape[1:]) for k, v in params.items()}
        expected = {k: tuple(v.shape[1:]) for k, v in like.items()}
        if shapes != expected:
          raise ValueError(f'params of {split} shaped {shapes}, not {expected}')
      return out
    except (KeyError, ValueError, TypeError, AttributeError) as e:
      raise files.RunFileError(
          f'{self.path("tasks.json")} does not hold task sets of {self.family.name} '
          f'({str(e).splitlines()[0] if str(e) else type(e).__name__}); restore it or start '
          'a new --workdir.') from None

  def result(self, name: str) -> dict:
    """results/<name>.json, checked (RunFileError naming the fix if it cannot be used)."""
    keys = (tuple(self.splits) if name == 'random_return' else
            ('steps', 'curves', 'run_s', 'compile_s', 'env_steps'))
    return files.read_json(self.path('results', f'{name}.json'), keys=keys,
                           fix=f'delete it to run stage {name} again')

  def _trainer(self, learner, family=None, make=None):
    family = family or self.family
    if (learner, family.name) not in self._trainers:   # one compiled trainer per config
      self._trainers[learner, family.name] = (make or make_train)(learner, family)
    return self._trainers[learner, family.name]

  # -- one learner stage, resumable -------------------------------------------------------
  def learner_stage(self, name, learner, rng, task_set, init_params, keep_checkpoint=False,
                    family=None, make=None, **tags):
    """Trains (or resumes) stage `name`; returns (result dict, final state, StageCheckpoints).

    `family`: the TaskFamily to train on (default the run's; e.g. RL^2's trial view of it);
    `make(learner, family)`: the trainer (default `learners.make_train`; e.g. MAML's).

    A stage already done returns its result read back: with its final state when
    `keep_checkpoint` (the BC experts, kept until distilled), else with no state
    and its leftover checkpoints dropped. Otherwise the caller saves what it needs
    from the state, then calls `finish`.
    """
    result_path = self.path('results', f'{name}.json')
    done = os.path.exists(result_path)
    if done and not keep_checkpoint:
      shutil.rmtree(self.path('checkpoints', name), ignore_errors=True)
      return self.result(name), None, None
    trainer = self._trainer(learner, family, make)
    ckpt = checkpoint.StageCheckpoints(self.path('checkpoints', name))
    resume, spent = ckpt.restore(jax.eval_shape(trainer.init, rng, task_set, init_params))
    if done:
      return self.result(name), resume[0], ckpt
    before_s, before_compile_s = spent.get('run_s', 0.0), spent.get('compile_s', 0.0)
    start = time.perf_counter()

    def save(chunks_done, state, curves):   # seconds so far travel with the state
      ckpt.save(chunks_done, state, curves, run_s=before_s + time.perf_counter() - start,
                compile_s=before_compile_s + trainer.last_compile_s)

    runs = int(jax.tree.leaves(task_set)[0].shape[0])

    def progress(steps, metrics):
      self.log.write(name.split('_')[0], steps, metrics, **tags)
      self._estimate(name, runs * steps, runs * learner.total_steps, runs * learner.eval_every)

    try:
      result = trainer.train(rng, task_set, init_params, progress_fn=progress,
                             checkpoint_fn=save, resume=resume, label=name,
                             show_progress=self.show_progress)
    except FloatingPointError as e:
      where = ', '.join(f'{k} {v}' for k, v in tags.items())
      raise FloatingPointError(
          f'stage {name} ({where}): {e} The last good checkpoint is kept in '
          f'{ckpt.directory}.') from None
    out = {'steps': result.steps.tolist(), 'curves': result.curves.tolist(),
           'run_s': before_s + result.run_s, 'compile_s': before_compile_s + result.compile_s,
           'env_steps': runs * learner.total_steps}
    return out, result.state, ckpt

  def _estimate(self, name, done, total, chunk):
    """Prints, once per process, the estimated time of the stages left, from the wall time
    between the first two chunks of a stage (`chunk` env steps, summed over its runs, as
    `done` and `total`); see estimate.py."""
    now, last = time.perf_counter(), self._last_chunk
    self._last_chunk = (name, now)
    if self.estimate_line or last is None or last[0] != name:
      return
    later = sum(n for stage, n in estimate.stage_env_steps(
        self.config, self.methods, self.splits).items()
                if stage != name and not os.path.exists(self.path('results', f'{stage}.json')))
    self.estimate_line = estimate.line(total - done + later, chunk / (now - last[1]), name)
    print(self.estimate_line, file=sys.stderr, flush=True)   # with or without progress bars

  def finish(self, name, out, ckpt=None):
    """Writes the stage's result (which marks it done) unless written, then drops `ckpt`."""
    path = self.path('results', f'{name}.json')
    if not os.path.exists(path):
      files.write_json(path, out)
    if ckpt is not None:
      ckpt.remove()

  # -- stages -----------------------------------------------------------------------------
  def random_backbone(self):
    """The backbone apb_randominit and scratch start from (and meta-training too)."""
    return policy.init_backbone(_key(self.config, 'backbone_init'), policy_config(self.config))

  def random_critic_backbone(self):
    """The critic backbone meta-training starts from (and apb_randominit's, with critic=meta)."""
    return networks.init_critic_backbone(_key(self.config, 'critic_backbone_init'),
                                         self.config.rl.critic_widths)

  def _init_params(self, name, backbone, n_runs, critic_backbone=None):
    params = adapt.init_params(_key(self.config, name), backbone, n_runs,
                               self.family.obs_size, self.family.action_size,
                               policy_config(self.config))
    return params if critic_backbone is None else dict(params, critic_backbone=critic_backbone)

  def meta_backbone(self):
    """The meta-trained backbone: from --config.backbone_from, or trained here."""
    c = self.config
    if c.backbone_from:
      source = os.path.join(c.backbone_from, 'checkpoints', 'backbone')
      backbone = checkpoint.restore_params(
          source, fix='pass the run directory of a finished meta_train')['backbone']
      adapt.check_backbone(backbone, policy_config(c), source)
      return backbone
    if not os.path.exists(self.path('results', 'meta_train.json')):
      backbone, adapters, out, ckpt, critic = (self._meta_rl() if c.meta.method == 'rl'
                                               else (*self._meta_bc(), None))
      if critic is not None:
        checkpoint.save_params(self.path('checkpoints', 'critic_backbone'), {'backbone': critic})
      checkpoint.save_params(self.path('checkpoints', 'backbone'), {'backbone': backbone})
      checkpoint.save_params(self.path('checkpoints', 'meta_adapters'), adapters)
      self.finish('meta_train', out, ckpt)
    return checkpoint.restore_params(self.path('checkpoints', 'backbone'),
                                     fix='delete results/meta_train.json to run meta_train '
                                     'again')['backbone']

  def meta_critic_backbone(self):
    """The meta-trained critic backbone (--config.adapt.critic=meta[_finetune]), saved by this
    run's meta_train or by --config.backbone_from's; call after `meta_backbone`."""
    source = os.path.join(self.config.backbone_from or self.dir, 'checkpoints', 'critic_backbone')
    return checkpoint.restore_params(
        source, fix='meta-train with the same --config.adapt.critic')['backbone']

  def _meta_rl(self):
    """(backbone, train adapters, result, checkpoints, critic backbone or None)."""
    c, train = self.config, self.tasks['train']
    critic_mode = adapt.meta_critic_mode(c.adapt.critic)   # 'mlp' unless critic=meta*
    learner = learner_config(c, 'shared', c.meta.total_steps, c.meta.eval_every,
                             critic_mode=critic_mode)
    params = self._init_params('meta/adapters', self.random_backbone(), c.meta.num_tasks,
                               self.random_critic_backbone() if critic_mode != 'mlp' else None)
    out, state, ckpt = self.learner_stage('meta_train', learner, _key(c, 'meta/rl'), train,
                                           params, method='rl', split='train')
    critic = (jax.tree.map(lambda x: x[0], state.agent.critic['backbone'])   # tied copies
              if critic_mode != 'mlp' else None)
    return state.shared.backbone, state.agent.actor['adapters'], out, ckpt, critic

  def _meta_bc(self):
    c, train = self.config, self.tasks['train']
    learner = learner_config(c, 'all', c.meta.total_steps, c.meta.eval_every)
    rng = _key(c, 'meta/bc')
    params = self._init_params('meta/adapters', self.random_backbone(), c.meta.num_tasks)
    out, state, ckpt = self.learner_stage('meta_experts', learner, rng, train, params,
                                           keep_checkpoint=True, method='bc', split='train')
    self.finish('meta_experts', out)       # keeps the experts' state until distilled
    d = meta_train.DistillConfig(**c.meta.distill)
    start = time.perf_counter()
    obs, actions = jax.jit(meta_train.demonstrations, static_argnums=(0, 2, 4, 5, 6))(
        self.family.env, state, learner, _key(c, 'meta/demos'), d.demo_steps,
        d.behaviour_noise, self._trainer(learner).state_axes)
    params, losses = jax.jit(meta_train.distill, static_argnums=(4, 5))(
        _key(c, 'meta/distill'), obs, actions, params, learner.policy, d)
    losses = np.asarray(losses)
    for i in range(0, d.steps, max(1, d.steps // 20)):
      self.log.write('meta', i + 1, {'bc_loss': losses[i]}, method='bc', split='train')
    out = dict(out, bc_loss=[float(losses[0]), float(losses[-1])],
               run_s=out['run_s'] + time.perf_counter() - start)
    return params['backbone'], params['adapters'], out, ckpt

  def random_return(self):
    path = self.path('results', 'random_return.json')
    if not os.path.exists(path):
      env = self.family.env
      fn = jax.jit(lambda r, t: evaluation.random_return(env, r, t, RANDOM_EPISODES))
      files.write_json(path, {
          split: float(np.mean(fn(_key(self.config, f'random/{split}'), self.tasks[split])))
          for split in self.splits})
    return self.result('random_return')

  def adapt(self, method_name, split, meta_backbone):
    c, m = self.config, adapt.method(method_name)
    steps = c.adapt.total_steps * (c.oracle_factor if m.oracle else 1)
    critic_mode, critic_from = adapt.critic_setup(method_name, c.adapt.critic)
    learner = learner_config(c, m.mode, steps, c.adapt.eval_every, c.exploration, critic_mode)
    runs = c.adapt.num_tasks * c.adapt.seeds
    backbone = meta_backbone if m.backbone == 'meta' else self.random_backbone()
    critic = {None: lambda: None, 'meta': self.meta_critic_backbone,
              'random': self.random_critic_backbone}[critic_from]()
    # Common random numbers: every method of a split starts from the same adapters and seeds.
    params = self._init_params(f'adapt/adapters/{split}', backbone, runs, critic)
    name = f'adapt_{method_name}_{split}'
    out, state, ckpt = self.learner_stage(
        name, learner, _key(c, f'adapt/{split}'), adapt.repeat_tasks(self.tasks[split], c.adapt.seeds),
        params, method=method_name, split=split)
    if state is not None:
      self.finish(name, out, ckpt)
    return out

  def budgets(self) -> dict:
    """Env steps per task of each phase, and the test runs (stated beside the claims)."""
    c = self.config
    out = {'meta_train': c.meta.total_steps, 'meta_train_tasks': c.meta.num_tasks,
           'adapt': c.adapt.total_steps, 'test_tasks': c.adapt.num_tasks, 'seeds': c.adapt.seeds}
    if 'oracle' in self.methods:
      out['oracle'] = c.adapt.total_steps * c.oracle_factor
    if any(m in baselines.NAMES for m in self.methods):
      out['baselines_meta_train'] = c.meta.total_steps * c.baselines.meta_factor
    return out

  def run(self) -> dict:
    needs_meta = needs_meta_backbone(self.methods)
    meta = self.meta_backbone() if needs_meta else None
    random_return = self.random_return()
    results = {m: {s: (baselines.get(m).adapt(self, s) if m in baselines.NAMES
                       else self.adapt(m, s, meta)) for s in self.splits}
               for m in self.methods}
    stages = [r for per in results.values() for r in per.values()]
    meta_stages = ['meta_train'] if needs_meta and not self.config.backbone_from else []
    meta_stages += [baselines.get(m).META_STAGE for m in self.methods if m in baselines.NAMES]
    stages += [self.result(name) for name in meta_stages]
    run_s = sum(r['run_s'] for r in stages)
    compile_s = sum(r['compile_s'] for r in stages)
    env_steps = sum(r['env_steps'] for r in stages)
    c = self.config
    out = report.build_report(
        {m: {s: {'steps': np.asarray(r['steps']), 'returns': np.asarray(r['curves'])}
             for s, r in per.items()} for m, per in results.items()},
        task=c.task, profile=c.profile, learner=c.learner, exploration=c.exploration,
        critic=c.adapt.critic,
        seeds=c.adapt.seeds, random_return=random_return, budgets=self.budgets(),
        timing={'total_s': run_s, 'compile_s': compile_s, 'env_steps': env_steps,
                'env_steps_per_s': env_steps / max(run_s - compile_s, 1e-9)})
    report.write_all(out, self.dir)
    self.log.close()
    return out


def _check_workdir(path: str) -> None:
  """One line naming the fix if `path` is a file or cannot be written."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f'--workdir={path} is a file, not a directory; pass a new --workdir.')
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f'--workdir={path} lies under {existing}, a file; pass a new --workdir.')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f'--workdir={path} cannot be written ({existing} is not writable); pass '
                     'a --workdir you can write to.')


def _flat_diff(old, new, prefix=''):
  """'field: old -> new' for every leaf that differs between two nested dicts."""
  keys = set(old) | set(new) if isinstance(old, dict) and isinstance(new, dict) else None
  if keys is None:
    return [] if old == new else [f'{prefix[:-1]}: {old!r} -> {new!r}']
  out = []
  for k in sorted(keys):
    out += _flat_diff(old.get(k), new.get(k), f'{prefix}{k}.')
  return out


def run(config, workdir: str, show_progress: bool = True, family=None) -> dict:
  return Experiment(config, workdir, show_progress, family).run()

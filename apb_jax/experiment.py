"""The APB experiment in one run directory: meta_train -> adapt (each method, each split) -> report.

    report = experiment.run(config, workdir)     # config: ml_collections, see experiments/configs

Stages and what marks them done (files under `workdir`):
  meta_train           results/meta_train.json, checkpoints/backbone/ (the backbone alone)
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
import time
import zlib

import jax
import numpy as np

from apb_jax import adapt, checkpoint, evaluation, files, meta_train, policy, report, tasks
from apb_jax.learners import LearnerConfig, PPOConfig, make_train
from apb_jax.learners.config import ALGOS, EXPLORATIONS
from apb_jax.metrics import MetricsLog

SPLITS = ('test_id', 'test_ood')
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'chex', 'orbax-checkpoint', 'brax', 'mujoco',
            'mujoco-mjx', 'numpy', 'ml-collections', 'absl-py', 'matplotlib')
RANDOM_EPISODES = 16


def _key(config, name: str):
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), zlib.crc32(name.encode()))


def _csv(text: str) -> list[str]:
  return [x.strip() for x in str(text).split(',') if x.strip()]


def policy_config(config) -> policy.PolicyConfig:
  return policy.PolicyConfig(widths=tuple(config.policy.widths),
                             activation=config.policy.activation,
                             core_size=config.policy.core_size)


def _tuples(group) -> dict:
  return {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in group.items()}


def learner_config(config, mode: str, total_steps: int, eval_every: int,
                   exploration: str = 'action'):
  """The learner config of one stage: config.learner, config.policy and config.rl (SAC, TD3)
  or config.ppo (PPO, which shares rl.eval_episodes)."""
  if config.learner == 'ppo':
    return PPOConfig(mode=mode, exploration=exploration, policy=policy_config(config),
                     total_steps=total_steps, eval_every=eval_every,
                     eval_episodes=config.rl.eval_episodes, **_tuples(config.ppo))
  return LearnerConfig(
      algo=config.learner, mode=mode, exploration=exploration, policy=policy_config(config),
      total_steps=total_steps, eval_every=eval_every,
      buffer_size=min(config.rl.buffer_size, total_steps),
      **{k: v for k, v in _tuples(config.rl).items() if k != 'buffer_size'})


def validate(config, check_task: bool = True) -> None:
  """Raises a one-line ValueError naming the fix for any bad field."""
  if check_task and config.task not in tasks.names():
    raise ValueError(f'unknown task family {config.task!r}; choose one of {tasks.names()}.')
  for name in _csv(config.methods):
    adapt.method(name)
  if not _csv(config.methods):
    raise ValueError('--config.methods is empty; e.g. --config.methods=apb,scratch.')
  for split in _csv(config.splits):
    if split not in SPLITS:
      raise ValueError(f'unknown split {split!r}; choose from {list(SPLITS)}.')
  if config.learner not in ALGOS:
    raise ValueError(f'unknown --config.learner={config.learner!r}; choose one of {list(ALGOS)}.')
  if config.exploration not in EXPLORATIONS:
    raise ValueError(f'unknown --config.exploration={config.exploration!r}; choose one of '
                     f'{list(EXPLORATIONS)}.')
  if config.meta.method not in meta_train.METHODS:
    raise ValueError(f'unknown --config.meta.method={config.meta.method!r}; choose one of '
                     f'{list(meta_train.METHODS)}.')
  if config.meta.method == 'bc' and config.policy.core_size and any(
      adapt.method(m).backbone == 'meta' for m in _csv(config.methods)):
    raise ValueError('--config.meta.method=bc distils feed-forward experts; use '
                     '--config.meta.method=rl with --config.policy.core_size > 0.')
  for field in ('meta.num_tasks', 'adapt.num_tasks', 'adapt.seeds', 'oracle_factor'):
    group, name = field.split('.') if '.' in field else (None, field)
    value = config[group][name] if group else config[name]
    if int(value) < 1:
      raise ValueError(f'--config.{field}={value} must be >= 1.')
  if config.backbone_from and not os.path.isdir(os.path.join(config.backbone_from, 'checkpoints',
                                                             'backbone')):
    raise ValueError(f'--config.backbone_from={config.backbone_from!r} holds no '
                     'checkpoints/backbone/; give the run directory of a finished meta_train.')
  # Building every stage's learner config checks budgets (multiples of num_envs, ...) and
  # settings (e.g. PPO refuses param noise) up front.
  for mode, steps, every, exploration in _learner_stages(config):
    learner_config(config, mode, steps, every, exploration)


def _learner_stages(config):
  """(mode, total_steps, eval_every, exploration) of every kind of learner stage."""
  a, m = config.adapt, config.meta
  yield 'shared' if m.method == 'rl' else 'all', m.total_steps, m.eval_every, 'action'
  yield 'adapters', a.total_steps, a.eval_every, config.exploration
  yield 'all', a.total_steps * config.oracle_factor, a.eval_every, config.exploration


def versions() -> dict:
  out = {p: _version(p) for p in PACKAGES}
  out.update(python=platform.python_version(), platform=platform.platform(),
             devices=[d.device_kind for d in jax.devices()])
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
    validate(config, check_task=family is None)
    self.config, self.dir, self.show_progress = config, os.path.abspath(workdir), show_progress
    self.family = family or tasks.make(config.task)
    self.methods = _csv(config.methods)
    self.splits = _csv(config.splits)
    self._trainers = {}
    self._prepare_dir()
    self.log = MetricsLog(self.dir)

  # -- the run directory ------------------------------------------------------------
  def _path(self, *parts):
    return os.path.join(self.dir, *parts)

  def _prepare_dir(self):
    os.makedirs(self.dir, exist_ok=True)
    config_json = json.loads(self.config.to_json_best_effort())
    if os.path.exists(self._path('config.json')):
      old = files.read_json(self._path('config.json'))
      diff = sorted(_flat_diff(old, config_json))
      if diff:
        raise ValueError(
            f'{self.dir} holds a run with another config ({"; ".join(diff[:3])}); rerun with '
            'the same flags to resume it, or pass a new --workdir.')
    else:
      files.write_json(self._path('config.json'), config_json)
    if not os.path.exists(self._path('tasks.json')):
      sets = {split: json.loads(self.family.tasks_to_json(
          self.family.sample(_key(self.config, f'tasks/{split}'), n, split), split))
              for split, n in (('train', self.config.meta.num_tasks),
                               *((s, self.config.adapt.num_tasks) for s in SPLITS))}
      files.write_json(self._path('tasks.json'), sets)
    files.write_json(self._path('versions.json'), versions())
    saved = files.read_json(self._path('tasks.json'))
    self.tasks = {split: self.family.tasks_from_json(json.dumps(v)) for split, v in saved.items()}

  def _trainer(self, learner):
    if learner not in self._trainers:     # one compiled trainer per distinct config
      self._trainers[learner] = make_train(learner, self.family)
    return self._trainers[learner]

  # -- one learner stage, resumable -------------------------------------------------------
  def _learner_stage(self, name, learner, rng, task_set, init_params, keep_checkpoint=False,
                     **tags):
    """Trains (or resumes) stage `name`; returns (result dict, final state, StageCheckpoints).

    A stage already done returns its result read back: with its final state when
    `keep_checkpoint` (the BC experts, kept until distilled), else with no state
    and its leftover checkpoints dropped. Otherwise the caller saves what it needs
    from the state, then calls `_finish`.
    """
    result_path = self._path('results', f'{name}.json')
    done = os.path.exists(result_path)
    if done and not keep_checkpoint:
      shutil.rmtree(self._path('checkpoints', name), ignore_errors=True)
      return files.read_json(result_path), None, None
    trainer = self._trainer(learner)
    ckpt = checkpoint.StageCheckpoints(self._path('checkpoints', name))
    resume, spent = ckpt.restore(jax.eval_shape(trainer.init, rng, task_set, init_params))
    if done:
      return files.read_json(result_path), resume[0], ckpt
    before_s, before_compile_s = spent.get('run_s', 0.0), spent.get('compile_s', 0.0)
    start = time.perf_counter()

    def save(chunks_done, state, curves):   # seconds so far travel with the state
      ckpt.save(chunks_done, state, curves, run_s=before_s + time.perf_counter() - start,
                compile_s=before_compile_s + trainer.last_compile_s)

    def progress(steps, metrics):
      self.log.write(name.split('_')[0], steps, metrics, **tags)

    try:
      result = trainer.train(rng, task_set, init_params, progress_fn=progress,
                             checkpoint_fn=save, resume=resume, label=name,
                             show_progress=self.show_progress)
    except FloatingPointError as e:
      where = ', '.join(f'{k} {v}' for k, v in tags.items())
      raise FloatingPointError(
          f'stage {name} ({where}): {e} The last good checkpoint is kept in '
          f'{ckpt.directory}.') from None
    runs = int(jax.tree.leaves(task_set)[0].shape[0])
    out = {'steps': result.steps.tolist(), 'curves': result.curves.tolist(),
           'run_s': before_s + result.run_s, 'compile_s': before_compile_s + result.compile_s,
           'env_steps': runs * learner.total_steps}
    return out, result.state, ckpt

  def _finish(self, name, out, ckpt=None):
    """Writes the stage's result (which marks it done) unless written, then drops `ckpt`."""
    path = self._path('results', f'{name}.json')
    if not os.path.exists(path):
      files.write_json(path, out)
    if ckpt is not None:
      ckpt.remove()

  # -- stages -----------------------------------------------------------------------------
  def random_backbone(self):
    """The backbone apb_randominit and scratch start from (and meta-training too)."""
    return policy.init_backbone(_key(self.config, 'backbone_init'), policy_config(self.config))

  def _init_params(self, name, backbone, n_runs):
    return adapt.init_params(_key(self.config, name), backbone, n_runs, self.family.obs_size,
                             self.family.action_size, policy_config(self.config))

  def meta_backbone(self):
    """The meta-trained backbone: from --config.backbone_from, or trained here."""
    c = self.config
    if c.backbone_from:
      source = os.path.join(c.backbone_from, 'checkpoints', 'backbone')
      backbone = checkpoint.restore_params(source)['backbone']
      adapt.check_backbone(backbone, policy_config(c), source)
      return backbone
    if not os.path.exists(self._path('results', 'meta_train.json')):
      backbone, adapters, out, ckpt = (self._meta_rl() if c.meta.method == 'rl'
                                       else self._meta_bc())
      checkpoint.save_params(self._path('checkpoints', 'backbone'), {'backbone': backbone})
      checkpoint.save_params(self._path('checkpoints', 'meta_adapters'), adapters)
      self._finish('meta_train', out, ckpt)
    return checkpoint.restore_params(self._path('checkpoints', 'backbone'))['backbone']

  def _meta_rl(self):
    c, train = self.config, self.tasks['train']
    learner = learner_config(c, 'shared', c.meta.total_steps, c.meta.eval_every)
    params = self._init_params('meta/adapters', self.random_backbone(), c.meta.num_tasks)
    out, state, ckpt = self._learner_stage('meta_train', learner, _key(c, 'meta/rl'), train,
                                           params, method='rl', split='train')
    return state.shared.backbone, state.agent.actor['adapters'], out, ckpt

  def _meta_bc(self):
    c, train = self.config, self.tasks['train']
    learner = learner_config(c, 'all', c.meta.total_steps, c.meta.eval_every)
    rng = _key(c, 'meta/bc')
    params = self._init_params('meta/adapters', self.random_backbone(), c.meta.num_tasks)
    out, state, ckpt = self._learner_stage('meta_experts', learner, rng, train, params,
                                           keep_checkpoint=True, method='bc', split='train')
    self._finish('meta_experts', out)       # keeps the experts' state until distilled
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
    path = self._path('results', 'random_return.json')
    if not os.path.exists(path):
      env = self.family.env
      fn = jax.jit(lambda r, t: evaluation.random_return(env, r, t, RANDOM_EPISODES))
      files.write_json(path, {
          split: float(np.mean(fn(_key(self.config, f'random/{split}'), self.tasks[split])))
          for split in self.splits})
    return files.read_json(path)

  def adapt(self, method_name, split, meta_backbone):
    c, m = self.config, adapt.method(method_name)
    steps = c.adapt.total_steps * (c.oracle_factor if m.oracle else 1)
    learner = learner_config(c, m.mode, steps, c.adapt.eval_every, c.exploration)
    runs = c.adapt.num_tasks * c.adapt.seeds
    backbone = meta_backbone if m.backbone == 'meta' else self.random_backbone()
    # Common random numbers: every method of a split starts from the same adapters and seeds.
    params = self._init_params(f'adapt/adapters/{split}', backbone, runs)
    name = f'adapt_{method_name}_{split}'
    out, state, ckpt = self._learner_stage(
        name, learner, _key(c, f'adapt/{split}'), adapt.repeat_tasks(self.tasks[split], c.adapt.seeds),
        params, method=method_name, split=split)
    if state is not None:
      self._finish(name, out, ckpt)
    return out

  def run(self) -> dict:
    needs_meta = any(adapt.method(m).backbone == 'meta' for m in self.methods)
    meta = self.meta_backbone() if needs_meta else None
    random_return = self.random_return()
    results = {m: {s: self.adapt(m, s, meta) for s in self.splits} for m in self.methods}
    stages = [r for per in results.values() for r in per.values()]
    if needs_meta and not self.config.backbone_from:
      stages.append(files.read_json(self._path('results', 'meta_train.json')))
    run_s = sum(r['run_s'] for r in stages)
    compile_s = sum(r['compile_s'] for r in stages)
    env_steps = sum(r['env_steps'] for r in stages)
    c = self.config
    out = report.build_report(
        {m: {s: {'steps': np.asarray(r['steps']), 'returns': np.asarray(r['curves'])}
             for s, r in per.items()} for m, per in results.items()},
        task=c.task, profile=c.profile, learner=c.learner, exploration=c.exploration,
        seeds=c.adapt.seeds, random_return=random_return,
        timing={'total_s': run_s, 'compile_s': compile_s, 'env_steps': env_steps,
                'env_steps_per_s': env_steps / max(run_s - compile_s, 1e-9)})
    report.write_all(out, self.dir)
    self.log.close()
    return out


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

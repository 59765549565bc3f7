"""The APB experiment in one run directory: meta_train -> adapt (each method, each split) -> report.

    report = experiment.run(config, workdir)     # config: ml_collections, see experiments/configs

Stages and what marks them done (files under `workdir`):
  meta_train           results/meta_train.json, checkpoints/backbone/ (the backbone with what
                       adaptation inherits: adapter origin and mean, merged observation
                       statistics, inherit.py; with --config.adapt.critic=meta[_finetune]
                       also checkpoints/critic_backbone/)
                       route 'bc': results/meta_experts.json first, then the distillation
  random_return        results/random_return.json
  adapt_<method>_<split>  results/adapt_<method>_<split>.json (curves, timing)
  report               report.json, report.md, *.png (report.json's `compile`: the programs
                       this launch traced and compiled, and the seconds, compile_stats.py)
A stage whose result file exists is never run again. A running learner stage
checkpoints its whole state after every evaluation (checkpoints/<stage>/,
orbax); after a kill, the same command resumes it from there. Every random
draw derives from `config.seed` and the stage's name, so on CPU a resumed run
writes the same report.json as an uninterrupted one (timing aside).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import sys
import time
import zlib

import jax
import numpy as np

from apb_jax import (adapt, baselines, checkpoint, compile_stats, estimate, evaluation, files,
                     hosts, inherit, meta_train, optim, plan, policy, programs, report)
from apb_jax import tasks
from apb_jax.learners import make_train, networks, normalizer
from apb_jax.tasks import base as tasks_base
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

  def __init__(self, config, workdir: str, show_progress: bool = True, family=None,
               task_sets=None):
    """`family`: a TaskFamily to use instead of `tasks.make(config.task)` (tests, new families);
    `task_sets`: {split: TaskParams [n, ...]} to use instead of sampling those splits (api.py);
    a run directory keeps the tasks it was started with."""
    validate(config, check_task=family is None,
             episode_length=family.episode_length if family else tasks.EPISODE_LENGTH)
    compile_stats.install()
    self._compiled_before = compile_stats.snapshot()   # report.json's `compile`: this launch's
    self.config, self.dir = config, os.path.abspath(workdir)
    self.show_progress = show_progress and hosts.writer()     # one process shows progress
    self.methods = csv(config.methods)
    self.splits = csv(config.splits)
    self._trainers = {}
    self._inherited = {}                  # checkpoint name -> what meta-training saved there
    self._last_chunk, self.estimate_line = None, None   # see _estimate
    self._given_tasks = dict(task_sets or {})
    found = self._read_dir()              # before the family is built: errors come at once
    hosts.barrier('run directory read')   # by every process before process 0 writes to it
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
      sets = {split: json.loads(self.family.tasks_to_json(self._given_tasks.get(
          split, self.family.sample(_key(self.config, f'tasks/{split}'), n, split)), split))
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

  def done(self, stage: str) -> bool:
    """Whether stage `stage` has finished (its result file, written last, is there)."""
    return os.path.exists(self.path('results', f'{stage}.json'))

  def result(self, name: str) -> dict:
    """results/<name>.json, checked (RunFileError naming the fix if it cannot be used)."""
    keys = (tuple(self.splits) if name == 'random_return' else
            ('steps', 'curves', 'run_s', 'compile_s', 'env_steps'))
    return files.read_json(self.path('results', f'{name}.json'), keys=keys,
                           fix=f'delete it to run stage {name} again')

  def _trainer(self, learner, family=None, make=None, per_run_backbone=False):
    family = family or self.family
    key = (learner, family.name, per_run_backbone)
    if key not in self._trainers:   # one compiled trainer per config
      self._trainers[key] = (make(learner, family) if make else
                             make_train(learner, family, per_run_backbone))
    return self._trainers[key]

  # -- one learner stage, resumable -------------------------------------------------------
  def learner_stage(self, name, learner, rng, task_set, init_params, keep_checkpoint=False,
                    family=None, make=None, per_run_backbone=False, parts=None, **tags):
    """Trains (or resumes) stage `name`; returns (result dict, final state, StageCheckpoints).

    `family`: the TaskFamily to train on (default the run's; e.g. RL^2's trial view of it);
    `make(learner, family)`: the trainer (default `learners.make_train`; e.g. MAML's);
    `per_run_backbone`: `init_params` hold a backbone per run (stacked stages, loop.HostLoop);
    `parts`: [(stage, runs slice, tags)] of stages stacked in this call, whose metrics are
    logged apart (default the whole call is stage `name` with `tags`).

    A stage already done returns its result read back: with its final state when
    `keep_checkpoint` (the BC experts, kept until distilled), else with no state
    and its leftover checkpoints dropped. Otherwise the caller saves what it needs
    from the state, then calls `finish`.
    """
    done = self.done(name)
    if done and not keep_checkpoint:
      files.remove_tree(self.path('checkpoints', name))
      return self.result(name), None, None
    trainer = self._trainer(learner, family, make, per_run_backbone)
    ckpt = checkpoint.StageCheckpoints(self.path('checkpoints', name))
    resume, spent = ckpt.restore(lambda: jax.eval_shape(trainer.init, rng, task_set, init_params))
    if done:
      return self.result(name), resume[0], ckpt
    before_s, before_compile_s = spent.get('run_s', 0.0), spent.get('compile_s', 0.0)
    start = time.perf_counter()

    def save(chunks_done, state, curves):   # seconds so far travel with the state
      ckpt.save(chunks_done, state, curves, run_s=before_s + time.perf_counter() - start,
                compile_s=before_compile_s + trainer.last_compile_s)

    runs = int(jax.tree.leaves(task_set)[0].shape[0])
    parts = parts or [(name, slice(None), tags)]

    def progress(steps, metrics):
      for stage, runs_of, stage_tags in parts:
        self.log.write(stage.split('_')[0], steps,
                       {k: np.asarray(v)[runs_of] for k, v in metrics.items()}, **stage_tags)
      self._estimate([p[0] for p in parts], runs * steps, runs * learner.total_steps,
                     runs * learner.eval_every)

    try:
      result = trainer.train(rng, task_set, init_params, progress_fn=progress,
                             checkpoint_fn=save, resume=resume, label=name,
                             show_progress=self.show_progress)
    except FloatingPointError as e:
      where = '; '.join(', '.join(f'{k} {v}' for k, v in t.items()) for _, _, t in parts)
      raise FloatingPointError(
          f'stage {name} ({where}): {e} The last good checkpoint is kept in '
          f'{ckpt.directory}.') from None
    out = {'steps': result.steps.tolist(), 'curves': result.curves.tolist(),
           'run_s': before_s + result.run_s, 'compile_s': before_compile_s + result.compile_s,
           'env_steps': runs * learner.total_steps}
    return out, result.state, ckpt

  def _estimate(self, stages, done, total, chunk):
    """Prints, once per process, the estimated time of the stages left, from the wall time
    between the first two chunks of a call (of `stages`; `chunk` env steps, summed over its
    runs, as `done` and `total`); see estimate.py."""
    now, last = time.perf_counter(), self._last_chunk
    self._last_chunk = (stages, now)
    if self.estimate_line or last is None or last[0] != stages:
      return
    later = sum(n for stage, n in estimate.stage_env_steps(
        self.config, self.methods, self.splits).items()
                if stage not in stages and not self.done(stage))
    self.estimate_line = estimate.line(total - done + later, chunk / (now - last[1]),
                                       ' + '.join(stages))
    if hosts.writer():     # with or without progress bars
      print(self.estimate_line, file=sys.stderr, flush=True)

  def finish(self, name, out, ckpt=None):
    """Writes the stage's result (which marks it done) unless written, then drops `ckpt`."""
    path = self.path('results', f'{name}.json')
    written = os.path.exists(path)
    hosts.barrier(f'checked {path}')   # every process decides before process 0 writes it
    if not written:
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

  def _init_params(self, name, backbone, n_runs, critic_backbone=None, start=None,
                   critic_start=None, mode=None):
    """Params of `n_runs` runs: every run's adapters from `start` (an origin or a mean), or,
    with `start` None, fresh per run from the key of `name`; the critic likewise. In `mode`
    'adapters' the adapters get the leaves of the adapter form (policy.with_form)."""
    config = policy_config(self.config, mode)
    if start is not None:
      start = policy.with_form(start, _key(self.config, 'adapter_form'), config)
    params = adapt.init_params(_key(self.config, name), backbone, n_runs,
                               self.family.obs_size, self.family.action_size, config, start)
    if critic_backbone is not None:
      params['critic_backbone'] = critic_backbone
      if critic_start is not None:
        params['critic_adapters'] = critic_start
    return params

  # -- what meta-training hands on (inherit.py) ---------------------------------------------
  def adapter_origin(self, name=inherit.ACTOR):
    """The adapters every run starts from (--config.adapt.adapters=origin), of the policy
    (inherit.ACTOR) or the APB critic (inherit.CRITIC), else None: the origin
    --config.backbone_from's meta-training used, or drawn from this run's seed."""
    c = self.config
    if c.adapt.adapters != 'origin':
      return None
    if c.backbone_from and self.carried():
      return self.inherited(name, 'adapter_origin')['adapter_origin']
    obs, act = self.family.obs_size, self.family.action_size
    if name == inherit.ACTOR:
      return inherit.origin(_key(c, 'adapter_origin'), obs, act, policy_config(c))
    return inherit.critic_origin(_key(c, 'critic_adapter_origin'), obs, act, c.rl.critic_widths)

  def inherited(self, name=inherit.ACTOR, *needs) -> dict:
    """checkpoints/<name>/ (inherit.ACTOR: the meta-trained backbone with its adapter origin,
    adapter mean and observation statistics; inherit.CRITIC: the critic's) of this run,
    meta-trained here first if needed, or of --config.backbone_from."""
    c = self.config
    if not c.backbone_from:
      self.meta_train()
    source = c.backbone_from or self.dir
    if name not in self._inherited:
      fix = ('meta-train with the same --config.adapt.critic' if name == inherit.CRITIC else
             inherit.OLD_PROTOCOL if c.backbone_from else
             'delete results/meta_train.json to run meta_train again')
      self._inherited[name] = inherit.load(source, name, fix)
      if name == inherit.ACTOR:
        adapt.check_backbone(self._inherited[name]['backbone'], policy_config(c), source)
    return inherit.require(self._inherited[name], needs, source, name)

  def carried(self) -> bool:
    """Whether what meta-training saved beside the backbone (adapter origin and mean,
    observation statistics) fits this family: always for this run's own meta-training; for
    --config.backbone_from, when its robot has this family's observation and action sizes
    (a backbone carried to another robot brings the backbone alone; inherit.py)."""
    return not self.config.backbone_from or inherit.fits(
        self.inherited(inherit.ACTOR), self.family.obs_size, self.family.action_size)

  def backbone_source(self) -> dict | None:
    """report.json's `backbone_source` (inherit.source) with --config.backbone_from, else None."""
    if not self.config.backbone_from:
      return None
    return inherit.source(self.config.backbone_from, self.carried())

  def meta_final(self):
    """Meta-training's mean final eval return over the train tasks (this run's, or
    --config.backbone_from's), or None where its result is not there."""
    path = os.path.join(self.config.backbone_from or self.dir, 'results', 'meta_train.json')
    if not os.path.exists(path) or not self.carried():   # another robot's returns compare not
      return None
    curves = np.asarray(files.read_json(path, keys=('curves',), fix='restore it')['curves'])
    return float(curves[:, -1].mean())

  def meta_train(self) -> None:
    """Meta-trains here (route --config.meta.method) unless done; saves what adaptation
    inherits (inherit.py)."""
    if self.done('meta_train'):
      return
    c = self.config
    backbone, adapters, stats, out, ckpt, critic = (
        self._meta_rl() if c.meta.method == 'rl' else (*self._meta_bc(), None))
    if critic is not None:
      inherit.save(self.dir, inherit.CRITIC,
                   inherit.critic_inheritance(critic, self.adapter_origin(inherit.CRITIC)))
    inherit.save(self.dir, inherit.ACTOR,
                 inherit.actor_inheritance(backbone, adapters, stats, self.adapter_origin()))
    checkpoint.save_params(self.path('checkpoints', 'meta_adapters'), adapters)
    self.finish('meta_train', out, ckpt)

  def _meta_rl(self):
    """(backbone, train adapters [K], obs stats [K], result, checkpoints, the train tasks'
    critics [K] or None)."""
    c, train = self.config, self.tasks['train']
    critic_mode = adapt.meta_critic_mode(c.adapt.critic)   # 'mlp' unless critic=meta*
    learner = learner_config(c, 'shared', c.meta.total_steps, c.meta.eval_every,
                             critic_mode=critic_mode)
    params = self._init_params(
        'meta/adapters', self.random_backbone(), c.meta.num_tasks,
        self.random_critic_backbone() if critic_mode != 'mlp' else None,
        self.adapter_origin(), self.adapter_origin(inherit.CRITIC))
    out, state, ckpt = self.learner_stage('meta_train', learner, _key(c, 'meta/rl'), train,
                                           params, method='rl', split='train')
    critic = state.agent.critic if critic_mode != 'mlp' else None
    return (state.shared.backbone, state.agent.actor['adapters'], state.agent.obs_stats, out,
            ckpt, critic)

  def _meta_bc(self):
    c, train = self.config, self.tasks['train']
    learner = learner_config(c, 'all', c.meta.total_steps, c.meta.eval_every)
    rng = _key(c, 'meta/bc')
    params = self._init_params('meta/adapters', self.random_backbone(), c.meta.num_tasks,
                               start=self.adapter_origin())
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
    # the student saw each expert's normalised observations: their statistics go on
    return params['backbone'], params['adapters'], state.agent.obs_stats, out, ckpt

  def random_return(self):
    path = self.path('results', 'random_return.json')
    if not os.path.exists(path):
      env = self.family.env
      # kept between launches like the learners' programs: tracing it (MJX's step in a
      # 1,000-step scan) took 7.7 s of every warm cheetah_dir launch
      fn = programs.jit(lambda r, t: evaluation.random_return(env, r, t, RANDOM_EPISODES),
                        f'random_return {self.family.name} {RANDOM_EPISODES}')
      files.write_json(path, {   # one value per task: the normalised score is per task
          split: [float(r) for r in fn(_key(self.config, f'random/{split}'), self.tasks[split])]
          for split in self.splits})
    return self.result('random_return')

  def start_params(self, method_name: str, split: str, runs: int) -> dict:
    """The params `runs` runs of a method start from: its backbone, adapters (the origin, the
    train adapters' mean, or, with adapters=independent, a draw per run: the same draws for
    every method of a split), the critic's, and the inherited normaliser (`inherits`)."""
    c, m = self.config, adapt.method(method_name)
    _, critic_from = adapt.critic_setup(method_name, c.adapt.critic)
    meta = self.inherited(inherit.ACTOR) if m.backbone == 'meta' else None
    start = (self.inherited(inherit.ACTOR, 'adapter_mean')['adapter_mean']
             if m.start == 'meta_mean' else self.adapter_origin())
    critic, critic_start = None, None
    if critic_from == 'meta':
      meta_critic = self.inherited(inherit.CRITIC)
      critic = meta_critic['backbone']
      critic_start = (self.inherited(inherit.CRITIC, 'adapter_mean')['adapter_mean']
                      if m.start == 'meta_mean' else self.adapter_origin(inherit.CRITIC))
    elif critic_from == 'random':
      critic, critic_start = self.random_critic_backbone(), self.adapter_origin(inherit.CRITIC)
    params = self._init_params(f'adapt/adapters/{split}', meta['backbone'] if meta else
                               self.random_backbone(), runs, critic, start, critic_start, m.mode)
    if meta is not None and c.adapt.obs_stats == 'meta' and self.carried():
      params['obs_stats'] = self.inherited(inherit.ACTOR, 'obs_stats')['obs_stats']
    return params

  def inherits(self, method_name: str) -> dict:
    """What `method_name` starts from, in words (report.json's `inherits`)."""
    c, m = self.config, adapt.method(method_name)
    meta = m.backbone == 'meta'
    own = '' if self.carried() else ' (this run\'s: the backbone is another robot\'s)'
    adapters = ('meta-trained adapters\' mean' if m.start == 'meta_mean' else
                f'adapter origin{own}' if c.adapt.adapters == 'origin' else 'independent draws')
    carried_stats = meta and c.adapt.obs_stats == 'meta' and self.carried()
    return {'backbone': report.META_BACKBONE if meta else 'random (meta-training\'s start)',
            'adapters': adapters, 'trainable_params': self.trainable_params(method_name),
            'obs_stats': 'meta-training\'s' if carried_stats else 'fresh',
            'critic': {None: 'fresh MLP', 'meta': 'meta-trained backbone',
                       'random': 'random backbone'}[adapt.critic_setup(method_name,
                                                                       c.adapt.critic)[1]]}

  def trainable_params(self, method_name: str) -> int:
    """How many policy scalars one run of `method_name` trains (the adapters, in the form
    --config.policy.adapter, or the whole network); the critic is not counted."""
    mode = adapt.method(method_name).mode
    config = policy_config(self.config, mode)
    shapes = jax.eval_shape(lambda k: policy.init_params(
        k, self.family.obs_size, self.family.action_size, config), jax.random.PRNGKey(0))
    if mode == 'all':
      return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
    return optim.count_trainable({'adapters': shapes['adapters']},
                                 policy.frozen_adapters(config))

  def adapt_learner(self, method_name):
    """The learner config of `method_name`'s adaptation stages."""
    c, m = self.config, adapt.method(method_name)
    steps = c.adapt.total_steps * (c.oracle_factor if m.oracle else 1)
    critic_mode, _ = adapt.critic_setup(method_name, c.adapt.critic)
    return learner_config(c, m.mode, steps, c.adapt.eval_every, c.exploration, critic_mode,
                          adaptation=True)

  def adapt_calls(self, group: list) -> list:
    """The adaptation stages `group` ([plan.Call] of one learner program), those not done
    run as ONE call (stacked_stage), each stage's runs from its own backbone, adapters,
    critic and normaliser. Returns the stages' results, in `group`'s order."""
    todo = [call for call in group if not self.done(call.stage)]
    if todo:
      self._adapt_together(todo)
    return [self.result(call.stage) for call in group]

  def _adapt_together(self, todo: list) -> None:
    learners = {self.adapt_learner(call.method) for call in todo}
    if len(learners) != 1:
      raise ValueError(f'stages {[call.stage for call in todo]} do not share one learner program')
    runs = self.config.adapt.num_tasks * self.config.adapt.seeds
    starts = [self.start_params(call.method, call.split, runs) for call in todo]
    per_run = len(todo) > 1
    params = _per_run_starts(starts, runs, self.family.obs_size) if per_run else starts[0]
    self.stacked_stage([(call.stage, call.method, call.split) for call in todo],
                       learners.pop(), params, per_run_backbone=per_run)

  def stacked_stage(self, stages: list, learner, init_params, make=None,
                    per_run_backbone=False, env_steps_per_run=None) -> None:
    """Adaptation stages `stages` ([(stage, method, split)], none done, one learner program)
    as ONE call of `learner_stage`, their runs (tasks x seeds each) side by side on the task
    axis with the keys each run has alone (`split(key of adapt/<split>, runs)`), so a stage's
    result is the same stacked or alone. `init_params`: shared by every run, or per run
    (`per_run_backbone`); `make`: the trainer (learner_stage's).

    The call checkpoints under checkpoints/<first stage>[+<n more>]/ and writes each
    stage's result file at its end: run_s and compile_s split evenly over the stages (equal
    runs and budgets), the call's own under `call` (the stages stacked, its wall and compile
    seconds); env_steps = runs x `env_steps_per_run` (default the learner's total_steps).
    Returns the call's final learner state (api.py reads the trained params from it)."""
    c = self.config
    runs = c.adapt.num_tasks * c.adapt.seeds
    keys = jax.numpy.concatenate([jax.random.split(self.key(f'adapt/{split}'), runs)
                                  for _, _, split in stages])
    task_set = jax.tree.map(lambda *x: jax.numpy.concatenate(x), *[
        adapt.repeat_tasks(self.tasks[split], c.adapt.seeds) for _, _, split in stages])
    name = stages[0][0] + (f'+{len(stages) - 1}' if len(stages) > 1 else '')
    parts = [(stage, slice(i * runs, (i + 1) * runs), {'method': method, 'split': split})
             for i, (stage, method, split) in enumerate(stages)]
    out, state, ckpt = self.learner_stage(name, learner, keys, task_set, init_params,
                                          make=make, per_run_backbone=per_run_backbone,
                                          parts=parts)
    share = 1.0 / len(stages)
    env_steps = runs * (env_steps_per_run or learner.total_steps)
    for stage, runs_of, _ in parts:
      self.finish(stage, dict(
          out, curves=out['curves'][runs_of], run_s=out['run_s'] * share,
          compile_s=out['compile_s'] * share, env_steps=env_steps,
          call={'stages': [p[0] for p in parts], 'run_s': out['run_s'],
                'compile_s': out['compile_s']}))
    ckpt.remove()
    return state

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
    calls = plan.calls(self.config, self.methods, self.splits)
    print(plan.describe(calls, self.config.adapt.stack), flush=True)
    if needs_meta:
      self.inherited()    # meta-trains first, or checks --config.backbone_from's checkpoint
      if 'apb_warm' in self.methods and not self.carried():
        raise ValueError(f'apb_warm starts from the mean of the meta-trained adapters, which '
                         f'do not fit {self.family.name}\'s sizes (--config.backbone_from is '
                         'another robot\'s); leave apb_warm out of --config.methods.')
    random_return = self.random_return()
    results = {m: {} for m in self.methods}
    groups = plan.stacked(calls) if self.config.adapt.stack else [[call] for call in calls]
    for group in groups:  # a baseline's meta stage runs within its first adaptation stage
      if group[0].method is None:
        continue          # meta-training, done above
      if group[0].method in baselines.NAMES:
        outs = baselines.get(group[0].method).adapt(self, [call.split for call in group])
      else:
        outs = self.adapt_calls(group)
      for call, out in zip(group, outs, strict=True):
        results[call.method][call.split] = out
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
        critic=c.adapt.critic, margin=c.claims.margin, final_evals=c.claims.final_evals,
        inherits={m: self.inherits(m) for m in self.methods
                                         if m in adapt.METHODS},
        meta_final=self.meta_final() if needs_meta else None,
        seeds=c.adapt.seeds, random_return=random_return, budgets=self.budgets(),
        timing={'total_s': run_s, 'compile_s': compile_s, 'env_steps': env_steps,
                'env_steps_per_s': env_steps / max(run_s - compile_s, 1e-9)})
    out['adapter'] = c.policy.adapter      # the adapters-only methods' form (policy.py)
    if c.backbone_from:
      out['backbone_source'] = self.backbone_source()
    out['compile'] = compile_stats.since(self._compiled_before)
    report.write_all(out, self.dir)
    self.log.close()
    return out


def _per_run_starts(starts: list, runs: int, obs_size: int) -> dict:
  """The start params of several stages (Experiment.start_params, `runs` runs each) as one
  per-run pytree: everything a stage's runs share tiled over its runs, then the stages
  concatenated on the task axis. A stage without inherited statistics gets the empty
  normaliser its learner would start from."""
  def tiled(p):
    p = dict(p, obs_stats=normalizer.from_tree(p.get('obs_stats', normalizer.init(obs_size))))
    return {k: v if k == 'adapters' else tasks_base.tile(v, runs) for k, v in p.items()}

  parts = [tiled(p) for p in starts]
  if len({tuple(sorted(p)) for p in parts}) != 1:
    raise ValueError('stacked stages start from different kinds of params: '
                     f'{[sorted(p) for p in parts]}')
  return jax.tree.map(lambda *x: jax.numpy.concatenate(x), *parts)


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


# Fields added after run directories were written, each with the values under which such a
# directory resumes (None: any; a field that changes how a run executes, not its results), or
# the value that reproduces what ran before it existed.
NEUTRAL_FIELDS = {'adapt.stack': None, 'policy.adapter': 'linear', 'policy.lora_rank': None}
_ABSENT = object()


def _flat_diff(old, new, prefix=''):
  """'field: old -> new' for every leaf that differs between two nested dicts (a field of
  NEUTRAL_FIELDS absent from `old` differs from nothing at its neutral value)."""
  keys = set(old) | set(new) if isinstance(old, dict) and isinstance(new, dict) else None
  if keys is None:
    if old is _ABSENT and prefix[:-1] in NEUTRAL_FIELDS and NEUTRAL_FIELDS[prefix[:-1]] in (
        None, new):
      return []
    shown = [None if v is _ABSENT else v for v in (old, new)]
    return [] if old == new else [f'{prefix[:-1]}: {shown[0]!r} -> {shown[1]!r}']
  out = []
  for k in sorted(keys):
    out += _flat_diff(old.get(k, _ABSENT), new.get(k, _ABSENT), f'{prefix}{k}.')
  return out


def run(config, workdir: str, show_progress: bool = True, family=None,
        program_dir: str | None = None) -> dict:
  """Runs every stage not done yet; `program_dir`: keep the learners' traced programs there
  between launches (programs.py; the launcher's cache.program_dir()), for a run whose family
  comes from the config (with a custom `family` it stays off)."""
  experiment = Experiment(config, workdir, show_progress, family)
  if program_dir is None or family is not None:
    return experiment.run()
  programs.enable(program_dir, context=config.to_json_best_effort(sort_keys=True))
  try:
    return experiment.run()
  finally:
    programs.disable()

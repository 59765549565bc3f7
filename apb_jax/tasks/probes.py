"""Probe environments: tiny tasks that make RL tests fast and decisive.

Each has the `TaskEnv` interface (`reset(rng, task)`, `step(state, action)`,
task in `state.info['task']`, `done`/`truncation` conventions) so learners
cannot tell them apart from Brax families. After Andy Jones' debugging probes
and rejax, adapted to continuous actions in [-1, 1]:

  constant    one step, obs 0, reward +1                 -> Q(s, a) = 1
  observation one step, obs +-1 at random, reward = obs   -> Q depends on obs
  action      one step, obs 0, reward = -(a - target)^2   -> actor finds target;
              `target` is the task, so K tasks need K different adapters
  discount    two steps, obs = step index, reward +1 at the end of step 2
              -> Q(step 0) = gamma, Q(step 1) = 1
  memory      two steps: obs is a cue c = +-1 at step 1 and 0 at step 2;
              reward 0, then -(a - c/2)^2. Only a policy that remembers the
              cue scores 0; a memoryless one at best -1/4 (a = 0)
  bandit      one step, obs 0, reward = target * a: the task shows only in
              the reward, and any a != 0 reveals its sign, at no cost (every
              action earns 0 in expectation over tasks). A policy that cannot
              learn within a task earns at best 0; one that remembers episode 1
              earns |target| (a = sign(target)) in episode 2 (the meta-RL probe)

Episodes end by termination (no truncation), so values do not bootstrap past
the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import State

from apb_jax.tasks.base import TaskFamily

PROBES = ('constant', 'observation', 'action', 'discount', 'memory', 'bandit')


class ProbeEnv:
  """One of PROBES; obs_size = action_size = `size` (1 unless 'action' is widened: its obs
  is `size` zeros and its reward -mean((a - target)^2), a robot of another shape for the
  cross-robot tests)."""

  dt = 1.0
  backend = 'probe'

  def __init__(self, kind: str, size: int = 1):
    if kind not in PROBES:
      raise ValueError(f'unknown probe {kind!r}; choose one of {list(PROBES)}.')
    if size != 1 and kind != 'action':
      raise ValueError(f'only the action probe takes a size, got size={size} for {kind!r}.')
    self.kind, self.action_size = kind, int(size)
    self.episode_length = 2 if kind in ('discount', 'memory') else 1
    self.sys_fn = None

  def observation_shape(self, task):
    del task
    return (self.action_size,)

  def _obs(self, rng, steps, cue=None):
    if self.kind == 'observation':
      return jnp.where(jax.random.bernoulli(rng), 1.0, -1.0)[None]
    if self.kind == 'memory':
      return jnp.where(steps == 0, cue, 0.0)[None]
    if self.kind == 'discount':
      return steps.astype(jnp.float32)[None]
    return jnp.zeros((self.action_size,))

  def reset(self, rng, task) -> State:
    steps = jnp.zeros((), jnp.int32)
    zero = jnp.zeros(())
    rng, k_cue = jax.random.split(rng)
    cue = jnp.where(jax.random.bernoulli(k_cue), 1.0, -1.0)
    return State(pipeline_state=None, obs=self._obs(rng, steps, cue), reward=zero,
                 done=zero, metrics={},
                 info={'task': task, 'steps': steps, 'truncation': zero,
                       'rng': rng, 'cue': cue})

  def step(self, state: State, action: jax.Array) -> State:
    steps = state.info['steps'] + 1
    done = (steps >= self.episode_length).astype(jnp.float32)
    if self.kind == 'constant':
      reward = jnp.ones(())
    elif self.kind == 'observation':
      reward = state.obs[0]
    elif self.kind == 'action':
      reward = -jnp.mean(jnp.square(action - state.info['task']['target']))
    elif self.kind == 'bandit':
      reward = state.info['task']['target'] * action[0]
    elif self.kind == 'memory':
      reward = done * -jnp.square(action[0] - 0.5 * state.info['cue'])
    else:
      reward = done
    rng, key = jax.random.split(state.info['rng'])
    info = dict(state.info, steps=steps, truncation=jnp.zeros(()), rng=rng)
    return state.replace(obs=self._obs(key, steps, state.info['cue']), reward=reward,
                         done=done, info=info)


def make_probe(kind: str, size: int = 1) -> TaskFamily:
  """A TaskFamily over probe `kind` (ProbeEnv's `size`); tasks carry `target` ~ U[-0.6, 0.6]."""

  def sample(rng, n):
    return {'target': jax.random.uniform(rng, (n,), minval=-0.6, maxval=0.6)}

  return TaskFamily(
      name=f'probe_{kind}' + (f'_x{size}' if size != 1 else ''), env=ProbeEnv(kind, size),
      samplers={'train': sample, 'test_id': sample, 'test_ood': sample},
      description={s: 'target ~ U[-0.6, 0.6]' for s in ('train', 'test_id', 'test_ood')})

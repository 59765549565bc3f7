"""Traced programs kept between launches, so that a warm launch neither traces nor lowers.

    programs.enable(cache.program_dir(), context=config.to_json())   # the launcher, once
    step = programs.jit(fun, fingerprint='Trainer.chunk ' + repr(learner_config))
    out = step(state, np.int32(0))          # like jax.jit(fun)(state, np.int32(0))

JAX's persistent compilation cache keeps compiled executables, but every launch still traces
each jitted function to a jaxpr and lowers it to StableHLO before it can look the executable
up: measured on this 2-core CPU, a warm cheetah_dir smoke launch (9 learner calls) spent
65.8 s of its 133 s tracing (most of it vmap batching MJX's step inside the chunks' scans)
and 17.8 s lowering. `jit` keeps each program as a serialized `jax.export.Exported` (its
StableHLO and its output tree) keyed by everything that determines it, and every launch,
the first included, runs that exported program; a warm launch reads it from disk and goes
straight to the (cached) compile: 53.0 s for that launch (docs/performance.md#compiling).

The key: the caller's `fingerprint` (the learner class, function and config), the active
`context` (the launcher's whole experiment config), the argument tree and each leaf's shape
and dtype, the source of the apb_jax package, the versions of the libraries whose
code is traced, and the backend. A closure constant missing from the key would run a stale
program, so the cache is off unless `enable` was called: the launcher enables it around an
experiment whose tasks it builds from the config (programs determined by the config and
the code); tests, api.py and custom families trace as before. With several devices or
processes it stays off (exported shardings are per device count; a plain jit instead).
Entries are written atomically (a temporary file renamed into place) and a file that does
not load is traced again and replaced, so a killed launch never leaves one that breaks the next.
Every code change keys new programs; those no launch has read for UNUSED_DAYS are removed.
Each program read or traced and kept is a monitoring event: compile_stats counts them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pathlib
import pickle
import re
import time
import warnings
from typing import Any, NamedTuple

import jax
from jax import monitoring

from apb_jax import compile_stats, files

LIBRARIES = ('jax', 'jaxlib', 'flax', 'optax', 'brax', 'mujoco', 'mujoco-mjx', 'numpy')
_active = {'dir': None, 'context': None}


UNUSED_DAYS = 14    # a kept program not read for this long is removed (old code's programs)


def enable(path: str | None, context: str | None) -> None:
  """Keeps programs under `path` for the experiment described by `context` (None: off);
  removes the programs there that no launch has read for UNUSED_DAYS."""
  _active.update(dir=path if context is not None else None, context=context)
  if _active['dir'] is not None:
    _prune(path, time.time() - UNUSED_DAYS * 86400)


def _prune(path: str, before: float) -> None:
  for entry in pathlib.Path(path).glob('*.program'):
    try:
      if entry.stat().st_mtime < before:
        entry.unlink()
    except OSError:     # another launch removed or replaced it first
      pass


def disable() -> None:
  enable(None, None)


def active() -> bool:
  return (_active['dir'] is not None and jax.device_count() == 1
          and jax.process_count() == 1)


@functools.cache
def code_fingerprint() -> str:
  """sha256 of apb_jax's source files, the traced libraries' versions and the backend."""
  h = hashlib.sha256()
  root = pathlib.Path(__file__).parent
  for path in sorted(root.rglob('*.py')):
    h.update(str(path.relative_to(root)).encode())
    h.update(path.read_bytes())
  for lib in LIBRARIES:
    try:
      h.update(f'{lib}={importlib.metadata.version(lib)}'.encode())
    except importlib.metadata.PackageNotFoundError:
      h.update(f'{lib}=none'.encode())
  h.update(f'{jax.default_backend()} {jax.devices()[0].device_kind}'.encode())
  return h.hexdigest()


def _avals(leaves) -> tuple:
  """((shape, dtype), ...) of the leaves. Not their weak types: a deserialized program's
  outputs lose them, so a value's weak type would differ between the launch that traced
  a program and the one that loaded it; programs are traced with strong-typed arguments."""
  return tuple((tuple(a.shape), str(a.dtype)) for a in map(jax.typeof, leaves))


class Kept(NamedTuple):
  """A kept program for one call's arguments: its key, the arguments' leaves, the program."""
  key: tuple
  leaves: list
  exported: Any       # jax.export.Exported
  out_tree: Any       # its output's PyTreeDef


class Program:
  """`jax.jit(fun)` that, while the cache is active, runs `fun`'s exported program (traced
  once per argument shapes, then kept on disk); otherwise the plain jit."""

  def __init__(self, fun, fingerprint: str):
    self._fun = fun
    self._jit = jax.jit(fun)
    self._fingerprint = fingerprint
    self._exported = {}     # (context, in tree, avals) -> (Exported, out tree)
    self._compiled = {}     # same key -> compiled executable of the exported call
    self._jit_only = False  # set when jax.export refused the function

  def __call__(self, *args):
    found = self._kept(args)
    if found is None:
      return self._jit(*args)
    key, leaves, exported, out_tree = found
    if any(isinstance(x, jax.core.Tracer) for x in leaves):   # inside another trace
      return jax.tree.unflatten(out_tree, exported.call(*leaves))
    return jax.tree.unflatten(out_tree, self._executable(key, leaves)(*leaves))

  def compile(self, *args) -> None:
    """Compiles for `args`' shapes now (the calls that follow reuse it)."""
    found = self._kept(args)
    if found is None:
      self._jit.lower(*args).compile()
    else:
      self._executable(found.key, found.leaves)

  def eval_shape(self, *args):
    """The output's shapes and dtypes (`jax.ShapeDtypeStruct` leaves), nothing run."""
    found = self._kept(args)
    if found is None:
      return self._jit.eval_shape(*args)
    return jax.tree.unflatten(found.out_tree, [jax.ShapeDtypeStruct(a.shape, a.dtype)
                                               for a in found.exported.out_avals])

  def _kept(self, args):
    """`Kept(key, leaves, Exported, out tree)` for `args`, or None: the cache is off, or this
    function cannot be exported (a host callback, a custom call without a compatibility
    guarantee), which warns once and leaves it to plain jit."""
    if not active() or self._jit_only:
      return None
    key, leaves = self._key(args)
    try:
      return Kept(key, leaves, *self._export(key, leaves))
    except Exception as e:   # noqa: BLE001  plain jit raises it again if it is the code's own
      self._jit_only = True
      warnings.warn(f'program not kept ({type(e).__name__}: {str(e)[:200]}); '
                    'it is traced every launch', stacklevel=3)
      return None

  @staticmethod
  def _key(args):
    """(key, leaves): the key (context, tree, avals) of `args`' program, and their leaves."""
    leaves, tree = jax.tree.flatten(args)
    return (_active['context'], tree, _avals(leaves)), leaves

  def _executable(self, key, leaves):
    if key not in self._compiled:
      exported, _ = self._export(key, leaves)
      self._compiled[key] = jax.jit(exported.call).lower(*leaves).compile()
    return self._compiled[key]

  def _export(self, key, leaves):
    """(Exported, out tree) for `key`: from memory, from the directory, or traced and kept."""
    if key in self._exported:
      return self._exported[key]
    context, tree, avals = key
    # repr, not pickle: pickle's bytes depend on which equal strings are one object
    key_text = repr((code_fingerprint(), self._fingerprint, context, _tree_text(tree), avals))
    name = hashlib.sha256(key_text.encode()).hexdigest()[:32]
    path = os.path.join(_active['dir'], f'{name}.program')
    found = _load(path)
    if found is None:
      found = self._trace(leaves, tree)
      _save(path, found)
      monitoring.record_event(compile_stats.PROGRAM_TRACED)
    else:
      monitoring.record_event(compile_stats.PROGRAM_LOADED)
    self._exported[key] = found
    return found

  def _trace(self, leaves, tree):
    box = {}

    def flat(*flat_args):
      out = self._fun(*jax.tree.unflatten(tree, flat_args))
      out_leaves, box['out_tree'] = jax.tree.flatten(out)
      return out_leaves

    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in map(jax.typeof, leaves)]
    exported = jax.export.export(jax.jit(flat))(*specs)
    return exported, box['out_tree']


def _tree_text(tree) -> str:
  """The tree's description without object addresses (MJX's Contact nodes hold wrapped
  arrays whose repr is `<... object at 0x7f...>`, a different text in every process)."""
  return re.sub(r' at 0x[0-9a-fA-F]+', '', str(tree))


@functools.cache
def _init_cpu_kernels() -> None:
  """Points jaxlib's CPU LAPACK kernels at scipy's LAPACK, as lowering a linalg op does.

  jaxlib 0.9.2 fills those function pointers only while lowering a linalg primitive
  (`jaxlib.lapack.prepare_lapack_call`); a deserialized program that reaches them (MJX's
  solver does) in a process that has lowered none calls unset pointers: measured, the
  second cheetah_dir launch segfaulted a few calls later. Lowering one small Cholesky (no
  compile) sets them through the public API.
  """
  if jax.default_backend() == 'cpu':
    jax.jit(jax.numpy.linalg.cholesky).lower(jax.ShapeDtypeStruct((2, 2), 'float32'))


def _load(path):
  """(Exported, out tree) from `path`, or None where there is none or it does not load."""
  _init_cpu_kernels()
  try:
    with open(path, 'rb') as f:
      blob = pickle.load(f)
    os.utime(path)      # read now: kept by _prune
    exported, out_tree = jax.export.deserialize(bytearray(blob['exported'])), blob['out_tree']
    if out_tree.num_leaves != len(exported.out_avals):
      raise ValueError('output tree and program disagree')
    return exported, out_tree
  except FileNotFoundError:
    return None
  except Exception as e:   # noqa: BLE001  a damaged entry is traced again and replaced
    warnings.warn(f'program cache entry {path} did not load ({type(e).__name__}); '
                  'tracing it again', stacklevel=3)
    return None


def _save(path, found) -> None:
  exported, out_tree = found
  blob = pickle.dumps({'exported': bytes(exported.serialize()), 'out_tree': out_tree})
  try:
    files.atomic_write_local(path, lambda f: f.write(blob))
  except OSError as e:    # a full or read-only disk: the run goes on without keeping it
    warnings.warn(f'program not kept ({e})', stacklevel=3)


def jit(fun, fingerprint: str) -> Program:
  return Program(fun, fingerprint)

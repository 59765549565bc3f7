"""Runs the APB experiment of one task family: meta_train -> adapt -> report.

    python -m experiments.run --config=experiments/configs/ant_goal.py:default \
        --workdir=runs/ant_goal_default [--config.seed=1 --config.methods=apb,scratch ...]

Any config field can be overridden with --config.<field>=<value>. Rerunning the
same command in the same --workdir resumes a killed run from its last
checkpoint and skips finished stages. Writes report.json, report.md and plots
to --workdir.
"""

from __future__ import annotations

import os
import sys

# XLA's C++ warnings (e.g. one per executable loaded from the compilation cache) stay off
# stderr, which holds our one-line errors; errors still print. Set it to 0 to see them.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'experiments/configs/<family>.py:<profile>', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'run directory (created or resumed)')
_PROGRESS = flags.DEFINE_bool('progress', True, 'show progress while training')
_KEEP_PROGRAMS = flags.DEFINE_bool(
    'keep_programs', True, 'keep the learners\' traced programs between launches, so a '
    'relaunch skips tracing (apb_jax/programs.py); false traces them every launch')
# Many processes (apb_jax/hosts.py): every process gets the same flags but its own id.
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for a run over several processes')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'processes of the run')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'this process: 0..num_processes-1')
_HOSTS_AUTO = flags.DEFINE_bool('hosts_auto', False, 'join the processes the cluster '
                                'started (SLURM, a TPU pod: jax.distributed auto-detection)')


def parse_flags(argv):
  """absl's flag parsing, with config mistakes reported in one line that names the fix."""
  try:
    return flags.FLAGS(argv)
  except OSError:                              # a --config.<field> read a file that is not there
    given = [a.split('=', 1)[1] for a in argv[1:] if a.startswith('--config=')]
    sys.exit(_no_config_file(given[-1] if given else ''))
  except (AttributeError, KeyError) as e:      # --config.<field> that the config lacks
    key = str(e).strip('"\'')
    given = [a.split('=')[0] for a in argv[1:] if a.split('=')[0].endswith(f'.{key}')]
    sys.exit(f'error: unknown config field {given[0] if given else key}; the fields and their '
             'defaults are in apb_jax/config_fields.py.')
  except flags.Error as e:                     # e.g. an unknown profile: keep the last line
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    last = lines[-1] if lines else str(e)
    sys.exit(f'error: {last.removeprefix("ValueError: ")}')


def _no_config_file(value: str) -> str:
  return (f'error: --config={value} names no config file; pass '
          '--config=experiments/configs/<family>.py:<profile> with a family from '
          'experiments/configs/.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}; pass settings as --config.<field>=')
  try:
    config = _CONFIG.value
    _ = config and config.task                 # a file that failed to load raises when read
  except OSError:
    sys.exit(_no_config_file(flags.FLAGS['config'].serialize().split('=', 1)[-1]))
  if config is None or not _WORKDIR.value:
    sys.exit('error: pass --config=experiments/configs/<family>.py:<profile> and --workdir=DIR.')
  from apb_jax import cache, hosts
  cache.quiet_cache_hits()                   # XLA:CPU's two lines on every cache hit
  try:
    hosts.start(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _HOSTS_AUTO.value)
  except ValueError as e:
    sys.exit(f'error: {e}')
  launch(config, _WORKDIR.value, show_progress=_PROGRESS.value,
         keep_programs=_KEEP_PROGRAMS.value)


def launch(config, workdir: str, show_progress: bool = True, keep_programs: bool = True) -> None:
  """Runs the experiment in `workdir`; a bad setting or a damaged run directory exits
  (status 1) with one line naming the fix. Over several processes (hosts.start first)
  every process runs it; process 0 prints and writes. `keep_programs`: the learners'
  traced programs are kept in the cache directory and reused by the next launch."""
  import jax

  from apb_jax import cache, experiment, hosts   # after flag parsing: --help stays fast
  cache.enable_compilation_cache(min_compile_secs=0)   # small programs too: warm smoke 61 -> 53 s
  if not hosts.writer():
    sys.stdout = open(os.devnull, 'w')         # process 0 speaks for the run (errors still show)
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  devices = jax.devices()
  hosts_line = f' in {jax.process_count()} processes' if jax.process_count() > 1 else ''
  print(f'jax {jax.__version__} on {jax.default_backend()}: {len(devices)} x '
        f'{devices[0].device_kind}{hosts_line} (the task axis is sharded over them)', flush=True)
  try:
    out = experiment.run(config, workdir, show_progress=show_progress,
                         program_dir=cache.program_dir() if keep_programs else None)
  except (ValueError, FloatingPointError) as e:
    sys.exit(f'error: {e}')
  print(f'report: {os.path.join(workdir, "report.md")}')
  c = out['compile']
  print(f"compiled {c['programs_compiled']} programs ({c['cache_hits']} from the cache): "
        f"{c['trace_s']:.1f} s tracing, {c['lower_s']:.1f} s lowering, "
        f"{c['backend_s']:.1f} s compiling; {c['programs_loaded']} learner programs read from "
        f"the program cache, {c['programs_traced']} traced")
  for method, per in out['methods'].items():
    print(method, ' '.join(f'{s}: {v["final_return"]["mean"]:.1f}' for s, v in per.items()))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)

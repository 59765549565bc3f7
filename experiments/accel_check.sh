#!/usr/bin/env bash
# The accelerator check of issue 11, one command on any machine with a GPU (or TPU):
#
#   experiments/accel_check.sh OUT_DIR [STEPS]        STEPS: any of env tests smoke bench paper meta
#                                                      (default: all five, in that order)
#   WHEELS=/path/to/wheels experiments/accel_check.sh OUT_DIR    # no network: install from there
#   STEP_TIMEOUT=300 experiments/accel_check.sh OUT_DIR paper     # stop each step after 300 s
#   KS='1 64' SAC_ARGS='--scaling_repeats=5' PPO_ARGS=...         # task counts; extra bench flags
#   TESTS_WORKERS=8 TESTS_BESIDE_BENCH=1 TESTS_TIMEOUT=500 ... tests bench
#       the fast tests in 8 pytest-xdist processes, in the background beside the bench's
#       compiles and frozen (SIGSTOP) while it times; TESTS_ARGS: extra pytest arguments
#
# Uses the jax it finds (`python3`, or $PYTHON): it never reinstalls jax, so a CUDA image's
# jax (e.g. 0.11.2 with CUDA 13) is what runs. Installs what else the library needs (brax,
# mujoco, mujoco-mjx, ml-collections, matplotlib, tensorboardX, pytest, apb_jax itself) from
# $WHEELS when set, else from PyPI. Every step appends its figures to OUT_DIR/accel_check.json
# (device, versions, wall seconds, and each step's own JSON): the fast tests on the device, the
# cheetah_vel smoke pipeline, `make bench`'s learners without brax.training (it does not run on
# jax >= 0.10) and with task scaling to K = 1,024 (one process per learner and K: they compile
# at once and time one at a time), and the cheetah_vel `paper` profile (resumes where it
# stopped when run again with the same OUT_DIR). Figures so far: experiments/measured/.
set -euo pipefail

OUT=${1:?usage: experiments/accel_check.sh OUT_DIR [env tests smoke bench paper]}
shift
STEPS=${*:-env tests smoke bench paper}
PY=${PYTHON:-python3}
KS=${KS:-1 8 64 256 1024}
TESTS_SID=   # session of the background tests (TESTS_BESIDE_BENCH)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"

record() {  # record STEP WALL_S RC [JSON_FILE]: one entry of accel_check.json
  "$PY" - "$OUT/accel_check.json" "$@" <<'EOF'
import json, os, sys
path, step, wall, rc = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
extra = sys.argv[5] if len(sys.argv) > 5 else ''
out = json.load(open(path)) if os.path.exists(path) else {}
entry = {'wall_s': wall, 'exit_status': rc}
if extra and os.path.exists(extra):
  entry['result'] = json.load(open(extra))
out[step] = entry
json.dump(out, open(path, 'w'), indent=2)
EOF
}

timed() {  # timed STEP JSON_FILE COMMAND...: runs COMMAND (a failure does not stop the check)
  local step=$1 json=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $step: $*"
  set +e
  "${TIMEOUT[@]}" "$@" 2>&1 | tee "$OUT/$step.log"
  rc=${PIPESTATUS[0]}
  set -e
  record "$step" "$(( $(date +%s) - start ))" "$rc" "$json"
}

install() {
  if [[ -n "${WHEELS:-}" ]]; then   # no network: the missing packages as wheels, no resolver
    [[ -d "$SITE" ]] || "$PY" -m pip install -q --no-index --no-deps --no-compile \
      --target "$SITE" "$WHEELS"/*.whl
  else
    "$PY" -m pip install -q brax mujoco mujoco-mjx ml-collections matplotlib tensorboardX \
      pytest absl-py
    "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
  fi
}

if [[ -n "${WHEELS:-}" ]]; then   # wheels go to $SITE; the library is read from the checkout
  WHEELS=$(cd "$WHEELS" && pwd)
  SITE=${SITE:-/tmp/apb_jax_site}
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
if [[ -n "${STEP_TIMEOUT:-}" ]]; then   # seconds per step; a stopped paper run resumes later
  TIMEOUT=(timeout --signal=INT --kill-after=20 "$STEP_TIMEOUT")
else
  TIMEOUT=()
fi

for step in $STEPS; do
  case $step in
    env)
      install
      "$PY" - "$OUT/env.json" <<'EOF'
import json, sys, importlib.metadata as md, jax
def version(p):
  try:
    return md.version(p)
  except md.PackageNotFoundError:
    return None
d = jax.devices()
json.dump({'backend': jax.default_backend(), 'devices': [x.device_kind for x in d],
           'memory_bytes': [(x.memory_stats() or {}).get('bytes_limit') for x in d],
           'versions': {p: version(p) for p in ('jax', 'jaxlib', 'flax', 'optax', 'chex',
                                                'orbax-checkpoint', 'brax', 'mujoco',
                                                'mujoco-mjx')}},
          open(sys.argv[1], 'w'), indent=2)
print(open(sys.argv[1]).read())
EOF
      record env 0 0 "$OUT/env.json";;
    tests)   # on the device: the tests pin themselves to the CPU only when JAX_PLATFORMS is unset
      # JAX_PLATFORMS=gpu means cuda *and* rocm on jax 0.11, an error where one is missing
      export JAX_PLATFORMS=${JAX_PLATFORMS:-$("$PY" -c 'import jax; b = jax.default_backend()
print(("rocm" if "rocm" in jax.devices()[0].client.platform_version.lower() else "cuda")
      if b == "gpu" else b)')}
      # shellcheck disable=SC2206
      tests=("$PY" -m pytest -m "not slow" -p no:cacheprovider --durations=20 -rfE ${TESTS_ARGS:-})
      if [[ -n "${TESTS_WORKERS:-}" ]]; then   # pytest-xdist processes sharing the device
        export XLA_PYTHON_CLIENT_PREALLOCATE=false
        tests+=(-n "$TESTS_WORKERS" -v)
      else
        tests+=(-q)
      fi
      if [[ -n "${TESTS_BESIDE_BENCH:-}" ]]; then   # frozen while the bench step times
        echo "== tests (in the background, frozen while the bench times): ${tests[*]}"
        TESTS_START=$(date +%s)
        limit=${TESTS_TIMEOUT:-${STEP_TIMEOUT:-}}
        rm -f "$OUT/tests_end" "$OUT/tests_sid"   # tests_end: "exit status, end time"
        setsid nice -n 10 bash -c 'echo $$ > "$1_sid"; "${@:2}"; echo "$? $(date +%s)" > "$1_end"' \
          _ "$OUT/tests" \
          ${limit:+timeout --signal=INT --kill-after=20 "$limit"} "${tests[@]}" \
          > "$OUT/tests.log" 2>&1 &
        until [[ -s "$OUT/tests_sid" ]]; do sleep 0.2; done
        TESTS_SID=$(cat "$OUT/tests_sid")
      else
        timed tests "" "${tests[@]}"
      fi;;
    smoke)
      timed smoke "$OUT/smoke/report.json" "$PY" -m experiments.run \
        --config=experiments/configs/cheetah_vel.py:smoke --workdir="$OUT/smoke" --progress=false;;
    bench)   # one process per (learner, K): compiles overlap, timings take turns (bench_turns.py)
      export XLA_PYTHON_CLIENT_PREALLOCATE=false   # the processes share the device's memory
      rm -rf "$OUT/turns"
      n=$(( 2 * $(wc -w <<< "$KS") ))
      start=$(date +%s)
      echo "== bench: $n processes, SAC and PPO at K = $KS, timed one at a time"
      pids=()
      for learner in learners ppo; do
        [[ $learner == learners ]] && args=${SAC_ARGS:-} || args=${PPO_ARGS:-}
        for k in $KS; do   # $args unquoted: several flags
          # shellcheck disable=SC2086
          "${TIMEOUT[@]}" "$PY" experiments/bench_$learner.py --brax=false --repeats=0 \
            --ks="$k" --turns="$OUT/turns" --turns_n=$n --out="$OUT/bench_${learner}_k$k.json" \
            $args > "$OUT/bench_${learner}_k$k.log" 2>&1 &
          pids+=($!)
        done
      done
      if [[ -n "$TESTS_SID" ]]; then   # background tests: frozen once every bench process is ready
        # by session, not process group: `timeout` gives pytest a process group of its own
        (while (( $(find "$OUT/turns" -name 'ready.*' 2>/dev/null | wc -l) < n )); do sleep 1; done
         pkill -STOP -s "$TESTS_SID" && date +%s > "$OUT/tests_frozen_at") &
        freezer=$!
      fi
      wait "${pids[@]}" || true
      if [[ -n "$TESTS_SID" ]]; then
        kill "$freezer" 2>/dev/null || true
        pkill -CONT -s "$TESTS_SID" || true
        [[ -f "$OUT/tests_frozen_at" ]] && TESTS_FROZEN=$(( $(date +%s) - $(cat "$OUT/tests_frozen_at") ))
      fi
      for learner in learners ppo; do
        [[ $learner == learners ]] && name=bench_sac key=task_scaling || name=bench_ppo key=ppo_task_scaling
        paths=()
        for k in $KS; do paths+=("$OUT/bench_${learner}_k$k.json"); done
        set +e
        "$PY" - "$OUT/$name.json" $key "${paths[@]}" <<'EOF2'
import sys
from experiments.bench_learners import merge_processes
merge_processes(sys.argv[1], sys.argv[2], sys.argv[3:])
EOF2
        rc=$?
        set -e
        record "$name" "$(( $(date +%s) - start ))" "$rc" "$OUT/$name.json"
      done;;
    paper)
      timed paper "$OUT/paper/report.json" "$PY" -m experiments.run \
        --config=experiments/configs/cheetah_vel.py:paper --workdir="$OUT/paper";;   # progress lines: chunk rates
    meta)   # issue 31 item 2: meta-training at more envs per task, one replay ratio (N:G pairs)
      export XLA_PYTHON_CLIENT_PREALLOCATE=false   # the processes share the device's memory
      settings=${META_SETTINGS:-16:1 64:4 256:16}   # envs per task : gradient updates per iteration
      steps=${META_STEPS:-102400}
      start=$(date +%s)
      rm -rf "$OUT/meta_turns"
      n=$(wc -w <<< "$settings")
      echo "== meta: throughput of $settings at K = 16, compiled at once, timed one at a time"
      pids=()
      for s in $settings; do
        "${TIMEOUT[@]}" "$PY" experiments/bench_learners.py --brax=false --repeats=0 --ks=16 \
          --num_envs="${s%:*}" --updates="${s#*:}" --noceiling --scaling_chunk="${META_CHUNK:-4096}" \
          --scaling_repeats=2 --turns="$OUT/meta_turns" --turns_n="$n" \
          --out="$OUT/meta_bench_${s/:/_}.json" > "$OUT/meta_bench_${s/:/_}.log" 2>&1 &
        pids+=($!)
      done
      wait "${pids[@]}" || true
      echo "== meta: cheetah_vel paper meta-training, $steps steps per task, every setting at once"
      pids=()
      for s in $settings; do   # the launcher's own stage; stopped once its result is written
        dir=/tmp/meta_${s/:/_}
        "${TIMEOUT[@]}" "$PY" -m experiments.run --config=experiments/configs/cheetah_vel.py:paper \
          --config.methods=apb --config.meta.total_steps="$steps" --config.meta.eval_every="${META_EVERY:-25600}" \
          --config.rl.num_envs="${s%:*}" --config.rl.grad_updates_per_step="${s#*:}" \
          --workdir="$dir" --progress=false > "$OUT/meta_run_${s/:/_}.log" 2>&1 &
        pids+=($!)
        (until [[ -s $dir/results/meta_train.json ]]; do sleep 2; done; sleep 1
         kill -TERM "${pids[-1]}" 2>/dev/null || true) &   # not INT: ignored in background jobs
      done
      wait "${pids[@]}" || true
      "$PY" - "$OUT/meta.json" "$steps" $settings <<'EOF2'
import json, os, sys
out, steps, settings = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res = {'what': 'cheetah_vel paper meta-training (K = 16) by envs per task N and gradient '
               'updates per iteration G; throughput alone (bench, turns), learning all at once',
       'steps_per_task': steps}
for s in settings:
  tag = s.replace(':', '_')
  entry = {}
  bench = os.path.join(os.path.dirname(out), f'meta_bench_{tag}.json')
  if os.path.exists(bench):
    entry['bench'] = json.load(open(bench))['task_scaling']['16']
  meta = f'/tmp/meta_{tag}/results/meta_train.json'
  if os.path.exists(meta):
    r = json.load(open(meta))
    entry.update(steps=r['steps'], mean_return=[sum(c) / len(c) for c in zip(*r['curves'])],
                 final_per_task=[c[-1] for c in r['curves']], run_s=r['run_s'],
                 compile_s=r['compile_s'])
  res[s] = entry
json.dump(res, open(out, 'w'), indent=2)
print(json.dumps(res, indent=1)[:3000])
EOF2
      record meta "$(( $(date +%s) - start ))" 0 "$OUT/meta.json";;
    *) echo "error: unknown step $step; choose from: env tests smoke bench paper meta" >&2; exit 2;;
  esac
done
if [[ -n "$TESTS_SID" ]]; then   # the background tests: their wall time counts the frozen seconds
  until [[ -s "$OUT/tests_end" ]]; do sleep 1; done
  pkill -KILL -s "$TESTS_SID" 2>/dev/null || true   # what a test left running
  read -r rc end < "$OUT/tests_end" || { rc=1; end=$(date +%s); }
  tail -n 40 "$OUT/tests.log"
  record tests "$(( end - TESTS_START ))" "$rc"
  echo "tests: exit status $rc after $(( end - TESTS_START )) s, ${TESTS_FROZEN:-0} s of them frozen while the bench timed"
fi
echo "figures: $OUT/accel_check.json"

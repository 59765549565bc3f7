#!/usr/bin/env bash
# The accelerator check of issue 11, one command on any machine with a GPU (or TPU):
#
#   experiments/accel_check.sh OUT_DIR [STEPS]        STEPS: any of env tests smoke bench paper
#                                                      (default: all five, in that order)
#   WHEELS=/path/to/wheels experiments/accel_check.sh OUT_DIR    # no network: install from there
#   STEP_TIMEOUT=300 experiments/accel_check.sh OUT_DIR paper     # stop each step after 300 s
#   SAC_ARGS='--repeats=1' PPO_ARGS='--ks=1,64' ...              # extra flags of the two benches
#
# Uses the jax it finds (`python3`, or $PYTHON): it never reinstalls jax, so a CUDA image's
# jax (e.g. 0.11.2 with CUDA 13) is what runs. Installs what else the library needs (brax,
# mujoco, mujoco-mjx, ml-collections, matplotlib, tensorboardX, pytest, apb_jax itself) from
# $WHEELS when set, else from PyPI. Every step appends its figures to OUT_DIR/accel_check.json
# (device, versions, wall seconds, and each step's own JSON): the fast tests on the device, the
# cheetah_vel smoke pipeline, `make bench`'s learners without brax.training (it does not run on
# jax >= 0.10) and with task scaling to K = 1,024, and the cheetah_vel `paper` profile (resumes
# where it stopped when run again with the same OUT_DIR). Not yet run on a GPU.
set -euo pipefail

OUT=${1:?usage: experiments/accel_check.sh OUT_DIR [env tests smoke bench paper]}
shift
STEPS=${*:-env tests smoke bench paper}
PY=${PYTHON:-python3}
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
      export JAX_PLATFORMS=${JAX_PLATFORMS:-$("$PY" -c 'import jax; print(jax.default_backend())')}
      timed tests "" "$PY" -m pytest -m "not slow" -q -p no:cacheprovider --durations=20;;
    smoke)
      timed smoke "$OUT/smoke/report.json" "$PY" -m experiments.run \
        --config=experiments/configs/cheetah_vel.py:smoke --workdir="$OUT/smoke" --progress=false;;
    bench)
      timed bench_sac "$OUT/bench_sac.json" "$PY" experiments/bench_learners.py --brax=false \
        --ks=1,8,64,256,1024 --out="$OUT/bench_sac.json" ${SAC_ARGS:-}
      timed bench_ppo "$OUT/bench_ppo.json" "$PY" experiments/bench_ppo.py --brax=false \
        --ks=1,8,64,256,1024 --out="$OUT/bench_ppo.json" ${PPO_ARGS:-};;
    paper)
      timed paper "$OUT/paper/report.json" "$PY" -m experiments.run \
        --config=experiments/configs/cheetah_vel.py:paper --workdir="$OUT/paper" --progress=false;;
    *) echo "error: unknown step $step; choose from: env tests smoke bench paper" >&2; exit 2;;
  esac
done
echo "figures: $OUT/accel_check.json"

# APB-JAX. Every target installs what it needs first (`make install`).
# ACCEL=cuda12|cuda13|tpu adds the jax plugin of that accelerator (default cpu: none).
# Launches use whatever device jax finds; the tests pin themselves to the CPU.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
ACCEL  ?= cpu
ACCELS := cpu cuda12 cuda13 tpu
STAMP  := $(VENV)/.installed-$(ACCEL)
RUFF   := $(VENV)/bin/ruff
JAX_VERSION := $(shell sed -n 's/^jax==\([^ ]*\).*/\1/p' requirements.txt)
export PYTHONUNBUFFERED := 1

.PHONY: install test test-all test-latest lint bench bench-envs profile experiment keep docs clean

install: $(STAMP)

# Re-runs only when requirements.txt or setup.cfg change.
$(STAMP): requirements.txt setup.cfg pyproject.toml
	@echo " $(ACCELS) " | grep -q " $(ACCEL) " || { echo "error: unknown ACCEL=$(ACCEL); choose one of: $(ACCELS)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=64"
	$(PIP) install -q -r requirements.txt
	test "$(ACCEL)" = cpu || $(PIP) install -q "jax[$(ACCEL)]==$(JAX_VERSION)"
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: install
	JAX_PLATFORMS=cpu $(PY) -m pytest -m "not slow" -q --durations=20

test-all: install
	JAX_PLATFORMS=cpu $(PY) -m pytest -q --durations=20

# The suite on the newest releases, nothing pinned, in its own venv (not CI; issue 11).
# brax.training is not used by the suite (it breaks on jax >= 0.10, google/brax#671).
# The newest Python here: python3.13, python3.12, a pyenv 3.13, else python3.
LATEST_PYTHON ?= $(firstword $(foreach p,python3.13 python3.12 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python) python3,$(shell $(p) -c 'import sys; print(sys.executable)' 2>/dev/null)))
LATEST := .venv-latest
test-latest:
	test -x $(LATEST)/bin/python || $(LATEST_PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip "setuptools>=64"
	$(LATEST)/bin/python -m pip install -q --upgrade jax flax optax chex orbax-checkpoint brax \
	    mujoco mujoco-mjx absl-py ml-collections matplotlib tensorboardX pytest
	$(LATEST)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	$(LATEST)/bin/python -m pip list 2>/dev/null | grep -iE "^(jax|jaxlib|flax|optax|chex|orbax-checkpoint|brax|mujoco|mujoco-mjx) "
	JAX_PLATFORMS=cpu $(LATEST)/bin/python -m pytest -m "not slow" -q --durations=20 $(ARGS)

$(RUFF): $(STAMP)
	$(PIP) install -q ruff==0.17.5

lint: $(RUFF)
	$(RUFF) check --select E,F,W,B --ignore E111,E114,E501 apb_jax experiments tests

# Our SAC vs brax.training SAC at equal settings, and task scaling (K = 1, 8, 64).
bench: install
	$(PY) experiments/bench_learners.py --out=runs/bench/results.json
	$(PY) experiments/bench_ppo.py --out=runs/bench/ppo.json

# Our SAC's update, iteration and evaluation timed part by part against brax.training's.
profile: install
	$(PY) experiments/profile_sac.py --profile_out=runs/bench/profile_sac.json

# Per family: compile time of reset+step and vmapped env steps/s at K=1,16,128.
bench-envs: install
	$(PY) experiments/bench_envs.py --out=runs/bench/envs.json

# The whole APB pipeline for one family: make experiment TASK=ant_goal [PROFILE=default] [WORKDIR=...]
# Rerun the same command to resume a killed run.
TASK    ?= ant_goal
PROFILE ?= default
WORKDIR ?= runs/$(TASK)_$(PROFILE)
FAMILIES := $(basename $(notdir $(filter-out %/common.py %/__init__.py,$(wildcard experiments/configs/*.py))))
experiment: install
	@test -f experiments/configs/$(TASK).py || { echo "error: unknown TASK=$(TASK); choose one of: $(FAMILIES)"; exit 2; }
	$(PY) -m experiments.run --config=experiments/configs/$(TASK).py:$(PROFILE) --workdir=$(WORKDIR) $(ARGS)

# A finished run's results (not its checkpoints) into experiments/measured/runs/<name>_<date>,
# for `make docs`: make keep RUN=runs/hopper_params_default [ARGS="--name=... --backbone"]
keep: install
	$(PY) -m experiments.keep $(RUN) $(ARGS)

# docs/configuration.md from apb_jax/config_fields.py, and every generated table (and its
# figure) in README.md and docs/*.md from experiments.summarize over the kept run directories.
docs: install
	$(PY) -m experiments.make_docs

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache *.egg-info

# APB-JAX. Every target installs what it needs first (`make install`).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
RUFF   := $(VENV)/bin/ruff
export JAX_PLATFORMS ?= cpu
export PYTHONUNBUFFERED := 1

.PHONY: install test test-all lint bench bench-envs experiment clean

install: $(STAMP)

# Re-runs only when requirements.txt or setup.cfg change.
$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=64"
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: install
	$(PY) -m pytest -m "not slow" -q --durations=20

test-all: install
	$(PY) -m pytest -q --durations=20

$(RUFF): $(STAMP)
	$(PIP) install -q ruff==0.17.5

lint: $(RUFF)
	$(RUFF) check --select E,F,W,B --ignore E111,E114,E501 apb_jax experiments tests

# Our SAC vs brax.training SAC at equal settings, and task scaling (K = 1, 8, 64).
bench: install
	$(PY) experiments/bench_learners.py --out=runs/bench/results.json
	$(PY) experiments/bench_ppo.py --out=runs/bench/ppo.json

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

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info

# The two commands: `make lab` (learn) and `make test` (prove every lesson still runs).
# Everything runs inside .venv, created on first use from the Python on PATH (3.11+).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip --disable-pip-version-check --no-input
# Where smoke runs write checkpoints and CSVs, so tests never touch a learner's runs/.
TEST_RUNS := $(CURDIR)/build/test-runs

.DEFAULT_GOAL := help
.PHONY: help lab test unit notebooks data lint bench e2e browser clean

help:  ## list the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed: run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project metadata changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -e ".[dev]"
	@touch $@ $(VENV)/.installed

data: $(VENV)/.installed  ## make sure the offline default dataset (synthetic) is present
	$(PY) -m data_scripts synthetic

# JupyterLab refuses to run as root unless told to (containers and CI machines often are root).
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: data  ## set up .venv, the default data, and open JupyterLab on the lessons
	$(BIN)/jupyter lab --notebook-dir=notebooks $(AS_ROOT)

test: $(VENV)/.installed-e2e browser  ## unit tests + every notebook under nbval (smoke mode) + the browser test
	COURSE_MODE=smoke $(PY) -m data_scripts synthetic
	COURSE_E2E=1 COURSE_MODE=smoke COURSE_STRICT_WARNINGS=1 COURSE_RUNS_DIR=$(TEST_RUNS) \
		$(PY) -m pytest tests notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=300 --durations=15

unit: $(VENV)/.installed-dev  ## unit tests only (fast, no notebooks, no browser)
	COURSE_MODE=smoke $(PY) -m pytest tests --ignore=tests/e2e

notebooks: $(VENV)/.installed-dev  ## notebooks only, under nbval in smoke mode
	COURSE_MODE=smoke $(PY) -m data_scripts synthetic
	COURSE_MODE=smoke COURSE_STRICT_WARNINGS=1 COURSE_RUNS_DIR=$(TEST_RUNS) $(PY) -m pytest notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=300 --durations=15

lint: $(VENV)/.installed-dev  ## ruff over the package, scripts, tests and notebooks
	$(BIN)/ruff check coursekit data_scripts tests bench tools notebooks

$(VENV)/.installed-e2e: pyproject.toml | $(PY)
	$(PIP) install -e ".[dev,e2e,deploy,demo]"
	@touch $@ $(VENV)/.installed-dev $(VENV)/.installed

browser:  ## Debian's chromium for the browser test (installed once with apt)
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed here: the browser test will say so and skip"

e2e: $(VENV)/.installed-e2e browser  ## only the browser test: a training lesson in JupyterLab in headless Chromium
	COURSE_E2E=1 $(PY) -m pytest tests/e2e

bench: $(VENV)/.installed-dev  ## performance scripts (not part of make test); writes bench/results.md
	$(PY) -m bench.run_all

clean:  ## remove build outputs (keeps .venv and data/)
	rm -rf build .pytest_cache

# Quickstart:  make repro  (run the pipeline)   make test  (run the tests)
#              make test-fast  (only the unit tests: no pipeline runs, servers, clusters or browser; < 1 min)
#              make docs  (build the docs site)
# The Python: CPython 3.11, 3.12 or 3.13, the newest of python3.13, python3.12, python3.11 on PATH that runs,
# or the one named: make PYTHON=/path/to/python3.X ...
SUPPORTED := 3.13 3.12 3.11
ifndef PYTHON
PYTHON := $(firstword $(foreach v,$(SUPPORTED),$(shell python$(v) -c "" >/dev/null 2>&1 && echo python$(v))))
endif
PY_VERSION := $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
# One stamp per Python version: after a change of Python the install runs again (and rebuilds .venv).
STAMP  := $(VENV)/.installed-$(PY_VERSION)
# Stages run `python ...`: put the venv first on PATH so that is the venv's python.
RUN    := PATH="$(BIN):$$PATH"

.PHONY: install check-python repro test test-fast test-prerequisites fuzz docs docs-serve check-lock bench \
	bench-repro bench-tracking lock lock-upgrade mlflow-ui ui-screenshots mlflow-server clean

install: $(STAMP)

# Refuses a missing Python or one outside 3.11-3.13 in one line (make's `*** ...  Stop.`, exit 2) before anything
# is installed: a make function in the recipes of the targets that need a Python.
check_python = $(if $(PYTHON),,$(error no python3.13, python3.12 or python3.11 that runs is on PATH; the project \
  needs CPython 3.11, 3.12 or 3.13: make PYTHON=/path/to/python3.X))$(if $(filter $(PY_VERSION),$(SUPPORTED)),,$(error \
  PYTHON=$(PYTHON) is $(if $(PY_VERSION),Python $(PY_VERSION),no Python that runs); the project needs CPython 3.11, \
  3.12 or 3.13: make PYTHON=/path/to/python3.X))
# A .venv made by another Python version is removed (one line says so), to be made anew.
define check_venv
	@if [ -e $(VENV) ]; then \
	  made=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "a Python that no longer runs"); \
	  if [ "$$made" != "$(PY_VERSION)" ]; then \
	    echo "make: .venv was made by Python $$made, not $(PY_VERSION) ($(PYTHON)): rebuilding .venv"; rm -rf $(VENV); fi; fi
endef

# The Python `make install` would use, and whether .venv was made by it: prints the Python and its version.
check-python:
	$(check_python)
	$(check_venv)
	@echo "$(PYTHON): Python $(PY_VERSION)"

$(STAMP): requirements.lock pyproject.toml
	$(check_python)
	$(check_venv)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

repro: install
	$(RUN) dvc repro

# The Debian packages the suite needs (chromium, postgresql) are installed first if missing, or named with the
# command that installs them (exit 2) before anything else is installed and any test runs. test-fast needs none.
test: test-prerequisites install
	$(RUN) python -m pytest -n 2 --dist loadscope --durations=15

test-prerequisites:
	$(check_python)
	@scripts/test-prerequisites.sh

test-fast: install
	$(RUN) python -m pytest -m unit -n 2 --dist loadscope -q

# The docs site: mkdocs.yml and docs/ into site/ (--strict: a broken link or a missing page fails the build).
docs: install
	$(RUN) mkdocs build --strict

docs-serve: install
	$(RUN) mkdocs serve

# Every locked wheel for CPython 3.12 and 3.13 (manylinux x86_64; 1.1 GB each), downloaded into a temporary
# directory, removed afterwards, and checked against the lock (tests/packaging runs the same check as a dry run).
CHECK_PYTHONS ?= 3.12 3.13
check-lock: install
	$(RUN) python scripts/check-lock.py --download $(CHECK_PYTHONS)

# Bad input by the thousand: the fuzz tests (tests/fuzz.py) with 20 times the suite's cases, then how many
# cases each target tried and how many failed.
FUZZ_TESTS := tests/base/test_fuzz_params.py tests/sweep/test_fuzz_sweep.py tests/rl/test_fuzz_model.py \
              tests/rl/test_fuzz_checkpoint.py
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(RUN) python -m pytest $(FUZZ_TESTS) -m unit -q -p no:cacheprovider

# The PyTorch peer (Stable-Baselines3) runs in a venv of its own, timed in the same bench run.
SB3 := $(CURDIR)/.venv-sb3
$(SB3)/.installed: benchmarks/sb3-requirements.txt
	$(check_python)
	test -x $(SB3)/bin/python || $(PYTHON) -m venv $(SB3)
	$(SB3)/bin/python -m pip install --quiet -r benchmarks/sb3-requirements.txt
	touch $@

# The throughput tables, the gradient step's profile and issue 23's speed goals (about 15 min), then a timed
# default `make repro` (bench-repro, about 40 min): on an idle machine.
bench: install $(SB3)/.installed
	$(RUN) python benchmarks/run.py --sb3-python $(SB3)/bin/python
	$(RUN) python benchmarks/repro_time.py

# A default `make repro` in a fresh clone of HEAD, timed stage by stage (about 40 min; on an idle machine).
bench-repro: install
	$(RUN) python benchmarks/repro_time.py

# The team server under load: 8 writers through the outbox, the server restarted once; nothing lost.
bench-tracking: install
	$(RUN) python benchmarks/tracking_load.py


# Pin the dependency ranges in pyproject.toml for Python 3.11-3.13 in one lock (uv's universal resolution, in a
# throwaway venv): `make lock` keeps the versions already pinned and resolves only what changed in pyproject.toml;
# `make lock-upgrade` takes the newest versions the ranges allow (the golden digests may then change). Entries
# with a marker (`; python_full_version >= '3.12'`) apply to some Pythons only; pip reads them as they are.
UV  := uv==0.13.9
LOCK = rm -rf /tmp/invaders-lock && $(PYTHON) -m venv /tmp/invaders-lock && \
	/tmp/invaders-lock/bin/python -m pip install --quiet "$(UV)" && \
	/tmp/invaders-lock/bin/uv pip compile --quiet --universal --python-version 3.11 pyproject.toml --extra dev \
	  --custom-compile-command "make lock" -o requirements.lock
lock:
	$(check_python)
	$(LOCK)

lock-upgrade:
	$(check_python)
	$(LOCK) --upgrade

# Prints the link that opens the experiment on its training runs, then serves the UI.
mlflow-ui: install
	$(BIN)/invaders ui

# The README's screenshots of the MLflow UI, taken by its browser test on a tiny pipeline run.
ui-screenshots: install
	@scripts/test-prerequisites.sh chromium
	mkdir -p docs
	INVADERS_SCREENSHOTS=$(CURDIR)/docs $(RUN) python -m pytest tests/stages/test_pipeline.py -k mlflow_ui -q

# A team's server: PostgreSQL, logins (README, Team server); e.g. ARGS="--local-postgres pg".
mlflow-server: install
	$(RUN) scripts/mlflow-server.sh $(ARGS)

clean:
	rm -rf $(VENV) $(SB3) data mlflow.db mlruns .pytest_cache site

# Quickstart:  make repro  (run the pipeline)   make test  (run the tests)
#              make test-fast  (only the unit tests: no pipeline runs, servers, clusters or browser; < 1 min)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# Stages run `python ...`: put the venv first on PATH so that is the venv's python.
RUN    := PATH="$(BIN):$$PATH"

.PHONY: install repro test test-fast fuzz bench bench-tracking lock mlflow-ui ui-screenshots mlflow-server clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

repro: install
	$(RUN) dvc repro

test: install
	$(RUN) python -m pytest -n 2 --dist loadscope

test-fast: install
	$(RUN) python -m pytest -m unit -n 2 --dist loadscope -q

# Bad input by the thousand: the fuzz tests (tests/fuzz.py) with 20 times the suite's cases, then how many
# cases each target tried and how many failed.
FUZZ_TESTS := tests/base/test_fuzz_params.py tests/sweep/test_fuzz_sweep.py tests/rl/test_fuzz_model.py \
              tests/rl/test_fuzz_checkpoint.py
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(RUN) python -m pytest $(FUZZ_TESTS) -m unit -q -p no:cacheprovider

# The PyTorch peer (Stable-Baselines3) runs in a venv of its own, timed in the same bench run.
SB3 := $(CURDIR)/.venv-sb3
$(SB3)/.installed: benchmarks/sb3-requirements.txt
	test -x $(SB3)/bin/python || $(PYTHON) -m venv $(SB3)
	$(SB3)/bin/python -m pip install --quiet -r benchmarks/sb3-requirements.txt
	touch $@

bench: install $(SB3)/.installed
	$(RUN) python benchmarks/run.py --sb3-python $(SB3)/bin/python

# The team server under load: 8 writers through the outbox, the server restarted once; nothing lost.
bench-tracking: install
	$(RUN) python benchmarks/tracking_load.py

# Re-resolve the dependency ranges in pyproject.toml and pin the result.
lock:
	rm -rf /tmp/invaders-lock && $(PYTHON) -m venv /tmp/invaders-lock
	/tmp/invaders-lock/bin/python -m pip install --quiet --upgrade "pip>=24"
	/tmp/invaders-lock/bin/python -m pip install --quiet ".[dev]"
	/tmp/invaders-lock/bin/python -m pip freeze --exclude invaders | sort -f > requirements.lock

# Prints the link that opens the experiment on its training runs, then serves the UI.
mlflow-ui: install
	$(BIN)/invaders ui

# The README's screenshots of the MLflow UI, taken by its browser test on a tiny pipeline run.
ui-screenshots: install
	mkdir -p docs
	INVADERS_SCREENSHOTS=$(CURDIR)/docs $(RUN) python -m pytest tests/stages/test_pipeline.py -k mlflow_ui -q

# A team's server: PostgreSQL, logins (README, Team server); e.g. ARGS="--local-postgres pg".
mlflow-server: install
	$(RUN) scripts/mlflow-server.sh $(ARGS)

clean:
	rm -rf $(VENV) $(SB3) data mlflow.db mlruns .pytest_cache

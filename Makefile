# Two commands on a fresh machine: `make demo` (the embedded default study) and `make test`.
# Both create or reuse the virtual environment in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint venv slurm clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) run_study.py demo

# Two workers (pytest-xdist): the 2 cores both busy while tests wait on jobs and subprocesses; the
# tests that use the SLURM cluster run in one worker, one after another (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# Everything but training, SLURM and end-to-end tests: a few minutes on 2 cores.
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -m "not training and not slurm and not e2e" $(PYTEST_ARGS)

# The habits CI keeps: lint, format, types (the import rules run inside the tests).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

slurm:
	bash tools/slurm_cluster.sh start

# Two commands on a fresh machine: `make demo` (the embedded default study) and `make test`.
# Both create or reuse the virtual environment in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test venv slurm clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) run_study.py

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

slurm:
	bash tools/slurm_cluster.sh start

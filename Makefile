# etlops-airflow developer entry points.
#   make demo   - virtualenv + Airflow 3.3.2 on embedded SQLite with the bundled DAGs, on :8080
#   make test   - virtualenv with the test extra, lint (ruff + mypy), then the whole test suite
#   make unit   - the fast tier only (no PostgreSQL, no subprocess); make integration - the rest
#   make bench  - every benchmark under bench/ (prints ratios against the baseline)

PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
PY := $(VENV)/bin/python
PY_MINOR := $(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
CONSTRAINTS := constraints/py$(PY_MINOR).txt
CONSTRAINT_ARG := $(if $(wildcard $(CONSTRAINTS)),-c $(CONSTRAINTS),)
STAMP := $(VENV)/.etlops-installed
PYTEST_ARGS ?=

.PHONY: venv demo test lint unit integration bench constraints clean

$(STAMP): pyproject.toml $(wildcard constraints/*.txt)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(CONSTRAINT_ARG) "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check etlops_airflow dags tests bench
	$(VENV)/bin/ruff format --check etlops_airflow dags tests bench
	$(VENV)/bin/mypy

test: venv lint
	scripts/run-tests.sh $(PYTEST_ARGS)

# Fast tier: no PostgreSQL server, no subprocess (tests/unit/conftest.py refuses them), < 1 min.
unit: venv
	scripts/run-tests.sh tests/unit -m "not postgres and not integration and not slow" $(PYTEST_ARGS)

# Everything the fast tier leaves out: real Airflow, PostgreSQL, subprocesses, DAG runs.
integration: venv
	scripts/run-tests.sh tests -m "postgres or integration or slow" $(PYTEST_ARGS)

demo: venv
	scripts/demo.sh

bench: venv
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# Refresh the tested versions after changing dependencies (then run make test).
constraints: venv
	{ echo "# Versions etlops-airflow is tested with (Python $(PY_MINOR), Airflow $(AIRFLOW_VERSION))."; \
	  echo "# Regenerate: make constraints"; \
	  $(PY) -m pip freeze --exclude-editable | grep -vi '^etlops'; } > $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

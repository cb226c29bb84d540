# Everything runs in .venv, created or refreshed from pyproject.toml on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,mysql]'
	touch $(STAMP)

run: $(STAMP)  ## the main job: the example app on the embedded SQLite default
	$(PY) examples/quickstart.py

test: lint  ## ruff, mypy --strict, then pytest on SQLite, a throwaway PostgreSQL and MariaDB
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)  ## fastpeewee against playhouse.pwasyncio and the raw drivers
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

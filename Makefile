# Everything runs in .venv, created or refreshed from pyproject.toml on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp

.PHONY: run quickstart test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,pydantic,app]'
	touch $(STAMP)

run: $(STAMP)  ## the main job: the reference app on SQLite at http://127.0.0.1:8000/docs
	$(PY) -m uvicorn examples.sql_app.main:app --host 127.0.0.1 --port $(PORT)

quickstart: $(STAMP)  ## a short script tour of the async and sync API
	$(PY) examples/quickstart.py

test: lint  ## ruff, mypy --strict, then pytest on SQLite and a throwaway PostgreSQL
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)  ## fastpeewee against playhouse.pwasyncio and the raw drivers
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

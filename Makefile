# Everything runs in .venv, created or refreshed from pyproject.toml on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp

.PHONY: run run-starlette run-litestar run-aiohttp run-flask quickstart test test-slow-paths lint format bench bench-rss soak docs docs-serve package-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres-binary,mysql,pydantic,app]'
	touch $(STAMP)

run: $(STAMP)  ## the main job: the reference app on SQLite at http://127.0.0.1:8000/docs
	$(PY) -m uvicorn examples.sql_app.main:app --host 127.0.0.1 --port $(PORT)

run-starlette: $(STAMP)  ## the reference app on Starlette
	$(PY) -m uvicorn examples.starlette_app.main:app --host 127.0.0.1 --port $(PORT)

run-litestar: $(STAMP)  ## the reference app on Litestar
	$(PY) -m uvicorn examples.litestar_app.main:app --host 127.0.0.1 --port $(PORT)

run-aiohttp: $(STAMP)  ## the reference app on aiohttp
	$(PY) -m examples.aiohttp_app --host 127.0.0.1 --port $(PORT)

run-flask: $(STAMP)  ## the reference app on Flask, served by waitress
	$(PY) -m waitress --listen=127.0.0.1:$(PORT) --threads=8 --call examples.flask_app.main:create_app

quickstart: $(STAMP)  ## a short script tour of the async and sync API
	$(PY) examples/quickstart.py

# The coverage floor is fail_under in pyproject.toml ([tool.coverage.report]).
COVERAGE_ARGS := --cov --cov-report=term-missing:skip-covered

test: lint docs  ## ruff, mypy, the docs site, pytest (with coverage) on SQLite, PostgreSQL and MariaDB, again without fast paths, the package
	$(PY) -m pytest $(COVERAGE_ARGS) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-slow-paths
	$(MAKE) --no-print-directory package-check

# Every test again with the compiled fast paths switched off, so the plain
# peewee route they stand in for stays right. tests/faults (the slowest
# modules, about connections rather than query paths) is left out.
test-slow-paths: $(STAMP)  ## pytest with FASTPEEWEE_FAST_PATHS=0 (faults left out)
	FASTPEEWEE_FAST_PATHS=0 $(PY) -m pytest -q tests --ignore=tests/faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src tests examples benchmarks
	$(VENV)/bin/mypy

format: $(STAMP)  ## ruff format on the whole tree
	$(VENV)/bin/ruff format src tests examples benchmarks

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# H1-H3 need wrk: installed with apt-get when missing and we are root, else skipped.
bench: $(BENCH_STAMP)  ## W1-W6 on SQLite/PostgreSQL/MariaDB, H1-H3 with 1 and 2 workers, peak RSS (QUICK=1: 5-7 minutes)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] \
		&& { apt-get install -y -qq wrk >/dev/null 2>&1 \
		     || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } \
		     || echo "could not install wrk: H1-H3 will be skipped"; } \
		|| echo "wrk is missing and we are not root: H1-H3 will be skipped (apt-get install wrk)"; }
	$(PY) -m benchmarks.run $(if $(QUICK),--quick,) $(BENCH_ARGS)

# The reference app's RSS after 10,000 and 100,000 requests (at most 5 minutes of load).
bench-rss: $(BENCH_STAMP)  ## the reference app's RSS growth from 10,000 to 100,000 requests
	$(PY) -m benchmarks.run --app-rss $(if $(QUICK),--quick,)

SOAK_SECONDS ?= 300

# tests/faults/test_soak.py runs the same for 30 s in `make test`.
soak: $(STAMP)  ## the reference app on PostgreSQL at pool saturation under faults (SOAK_SECONDS=300)
	$(PY) -m benchmarks.soak --seconds $(SOAK_SECONDS)

# The site: the benchmark chart and tables regenerated from benchmarks/results/*.json,
# then mkdocs with warnings as errors (strict: true in mkdocs.yml). Its code blocks
# run in tests/test_docs_site.py.
docs: $(STAMP)  ## build the documentation site into site/ (mkdocs build --strict)
	$(PY) -m benchmarks.chart
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

docs-serve: docs  ## serve the site at http://127.0.0.1:8000 while editing docs/
	$(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:$(PORT)

# python -m build (sdist, and the wheel built from it), twine check, then the wheel in a
# clean virtualenv: the base install and the postgres-binary, mysql and fastapi extras.
package-check: $(STAMP)  ## build the sdist and wheel, twine check, smoke-test them in a clean venv
	PY=$(PY) PYTHON=$(PYTHON) .ci/package-check

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage site dist

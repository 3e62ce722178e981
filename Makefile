# The two commands: `make run` (the whole stack) and `make test` (the whole suite).
# Both create or update .venv first; nothing else needs to be installed but Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP_BASE := $(VENV)/.installed-base
STAMP_DEV := $(VENV)/.installed-dev
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test lint test-only smoke bench chaos venv venv-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP_BASE): requirements/base.txt | $(PY)
	$(PIP) install -r requirements/base.txt
	$(PY) -m apps.strategies.engine.warm
	touch $@

$(STAMP_DEV): requirements/base.txt requirements/dev.txt | $(PY)
	$(PIP) install -r requirements/dev.txt
	$(PY) -m apps.strategies.engine.warm
	touch $(STAMP_BASE) $@

venv: $(STAMP_BASE)
venv-dev: $(STAMP_DEV)

run: $(STAMP_BASE)
	$(PY) -m apps.strategies.engine.warm
	exec $(PY) -m tradingsite.launcher run

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SETTINGS_MODULE=tests.settings $(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test-only: $(STAMP_DEV)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint test-only

# The embedded-default smoke tests alone (no DATABASE_URL / REDIS_URL).
smoke: $(STAMP_DEV)
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL -u CELERY_RESULT_BACKEND $(VENV)/bin/pytest -m smoke $(PYTEST_ARGS)

bench: $(STAMP_DEV)
	$(PY) -m benchmarks

# The chaos run at full size (docs/chaos.md): 200 worker kills and a Redis crash on PostgreSQL; prints its counts,
# fails on any duplicate or lost order. Sizes and servers may be overridden from the environment.
chaos: $(STAMP_DEV)
	DATABASE_URL="$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/trading_chaos}" \
	REDIS_URL="$${REDIS_URL:-redis://127.0.0.1:6379/5}" \
	VAR_DIR="$${VAR_DIR:-var/chaos}" \
	CHAOS_KILLS="$${CHAOS_KILLS:-200}" CHAOS_ORDERS="$${CHAOS_ORDERS:-600}" \
	CHAOS_KILL_INTERVAL="$${CHAOS_KILL_INTERVAL:-1.0}" CHAOS_WORKERS="$${CHAOS_WORKERS:-3}" \
	CHAOS_SETTLE_SECONDS="$${CHAOS_SETTLE_SECONDS:-120}" \
	$(VENV)/bin/pytest -s -q tests/chaos/test_chaos.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

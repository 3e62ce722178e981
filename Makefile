# The two commands: `make run` (the whole stack) and `make test` (the whole suite).
# Both create or update .venv first; nothing else needs to be installed but Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP_BASE := $(VENV)/.installed-base
STAMP_DEV := $(VENV)/.installed-dev
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test lint test-only smoke bench venv venv-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP_BASE): requirements/base.txt | $(PY)
	$(PIP) install -r requirements/base.txt
	touch $@

$(STAMP_DEV): requirements/base.txt requirements/dev.txt | $(PY)
	$(PIP) install -r requirements/dev.txt
	touch $(STAMP_BASE) $@

venv: $(STAMP_BASE)
venv-dev: $(STAMP_DEV)

run: $(STAMP_BASE)
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

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

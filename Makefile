# The two commands of the README, and the developer's helpers. Each target does its own set-up.
PYTHON ?= python3
VENV   := .venv
HUB    := $(VENV)/bin/hub
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)

.PHONY: demo test test-cluster test-federation lint format venv stack-down lock

demo: $(STAMP)            ## the main job end to end on the local stack
	$(HUB) demo

test: lint               ## venv, lint, the real stack, then every test
	$(HUB) stack up
	$(VENV)/bin/pytest

test-cluster: lint      ## the replicated three-broker cluster under broker and controller kills
	$(HUB) stack up
	$(VENV)/bin/pytest -m cluster

test-federation: lint   ## South Jeolla's own cluster, MirrorMaker 2 to this one, and their faults
	$(HUB) stack up
	$(VENV)/bin/pytest -m federation

lint: $(STAMP)            ## ruff (lint + format check) and mypy, as CI expects them clean
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

venv: $(STAMP)

stack-down:
	$(HUB) stack down

lock: $(STAMP)             ## re-resolve requirements.lock from pyproject.toml (then commit it)
	$(VENV)/bin/pip install -q pip-tools
	$(VENV)/bin/pip-compile -q --strip-extras --extra dev --extra bench --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml

# Every install takes the versions requirements.lock pins (the whole dependency set).
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c requirements.lock -e '.[dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AO := $(VENV)/bin/ao
# codex for the test suite is provisioned here, by the same code path users get.
TEST_HOME := $(CURDIR)/.cache/test-home
PYTEST_ARGS ?=

.PHONY: demo test install codex clean bench reliability lint system-deps browser-deps vendor demo-dashboard

# Editable, and one static path entry (see pyproject.toml); the install also compiles the scan's C loop.
$(VENV)/.installed: pyproject.toml supervisor/observe/_fastscan.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# git, tmux and bubblewrap (ao's jail) from Debian's packages when missing; needs root (CI runs as root).
system-deps:
	@missing=""; for pair in git:git tmux:tmux bwrap:bubblewrap; do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing from Debian:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# Debian's chromium, for the dashboard's browser tests (Playwright drives it; no browser download is needed).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { echo "installing from Debian: chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

codex: install system-deps
	mkdir -p $(TEST_HOME)
	AO_HOME=$(TEST_HOME) $(AO) doctor --provision > $(TEST_HOME).doctor.log 2>&1 || (cat $(TEST_HOME).doctor.log; exit 1)

demo: install system-deps
	$(AO) doctor --provision > /dev/null || $(AO) doctor
	$(AO) demo

test: codex lint browser-deps
	AO_TEST_HOME=$(TEST_HOME) $(PY) -m pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

# ruff (pyflakes, style, imports, bugbear) and mypy, both configured in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check supervisor tests bench reliability
	$(VENV)/bin/mypy

# Every benchmark (P1-P6) side by side; prints one table and writes bench/latest.md. BENCH_ARGS=--quick for a smoke run.
BENCH_ARGS ?=
bench: codex
	AO_TEST_HOME=$(TEST_HOME) $(PY) bench/run_all.py $(BENCH_ARGS)

# Fault injection R1-R7 against the real codex (~10 min, not part of `make test`); ends with a table.
# RELIABILITY_SEED=N replays a run; RELIABILITY_ARGS passes pytest options (e.g. -k r3).
RELIABILITY_ARGS ?=
reliability: codex
	AO_TEST_HOME=$(TEST_HOME) $(PY) -m pytest -p no:cacheprovider -q -s --tb=short reliability $(RELIABILITY_ARGS)

# The dashboard's front-end libraries from npm at pinned versions into supervisor/dashboard/static/vendor (committed).
vendor: install
	$(PY) -m supervisor.dashboard.vendor --build-dir build/vendor

# The demo fleet under a temporary AO_HOME, then screenshots of the board and a session page (shown in the README).
demo-dashboard: codex browser-deps
	$(PY) -m supervisor.dashboard.screenshots --out tests/screenshots --codex-cache $(TEST_HOME)/cache/codex

clean:
	rm -rf $(VENV) .cache build dist *.egg-info

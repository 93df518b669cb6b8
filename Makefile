# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AO := $(VENV)/bin/ao
# codex for the test suite is provisioned here, by the same code path users get.
TEST_HOME := $(CURDIR)/.cache/test-home
PYTEST_ARGS ?=

.PHONY: demo test install codex clean bench reliability

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

codex: install
	mkdir -p $(TEST_HOME)
	AO_HOME=$(TEST_HOME) $(AO) doctor --provision > $(TEST_HOME).doctor.log 2>&1 || (cat $(TEST_HOME).doctor.log; exit 1)

demo: install
	$(AO) doctor --provision > /dev/null || $(AO) doctor
	$(AO) demo

test: codex
	AO_TEST_HOME=$(TEST_HOME) $(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .cache build dist *.egg-info

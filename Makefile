# plmon: the two set-up commands are `make demo` and `make test`; both work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test lint install install-test services bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(TSTAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	touch $@ $(STAMP)

install: $(STAMP)
install-test: $(TSTAMP)

demo: $(STAMP)
	$(VENV)/bin/plmon scan --from monitor/demo_tenant

lint: $(TSTAMP)
	$(VENV)/bin/ruff check monitor checks alerts tests

# Services the tests need are installed and started by the test session itself (see tests/services.py).
test: $(TSTAMP) lint
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis test-artifacts

# plmon: the two set-up commands are `make demo` and `make test`; both work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test lint typecheck install install-test services bench clean azurite

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Bytecode is compiled at install, as pip does for a wheel: an editable install under PYTHONDONTWRITEBYTECODE (set on
# some CI and container images, this one's included) would otherwise compile every module it imports in every process:
# ~0.1 s of every command (plmon scan of the demo tenant 0.21-0.23 -> 0.12 s; plmon --help 0.86-0.97 -> 0.58-0.74 s
# in make bench). A module edited since is compiled again in memory, as Python does for any stale .pyc.
COMPILE := $(PY) -m compileall -q monitor checks alerts >/dev/null

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	$(COMPILE)
	touch $@

$(TSTAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	$(COMPILE)
	touch $@ $(STAMP)

# The folders install as plmon.monitor, plmon.checks and plmon.alerts (pyproject's package-dir). Python finds
# them through the editable install; mypy reads files, so it gets a plmon/ of links to the folders (mypy_path).
TYPECHECK := build/typecheck/plmon
$(TYPECHECK):
	mkdir -p $@
	for d in monitor checks alerts; do ln -sfn ../../../$$d $@/$$d; done

install: $(STAMP)
install-test: $(TSTAMP)

demo: $(STAMP)
	$(VENV)/bin/plmon scan --from monitor/demo_tenant

lint: $(TSTAMP) $(TYPECHECK)
	$(VENV)/bin/ruff check monitor checks alerts tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

typecheck: $(TSTAMP) $(TYPECHECK)
	$(VENV)/bin/mypy

# Azurite (Azure Storage emulator: blob, queue and table in one process) for the shared-store tests and the
# scale-out bench (monitor/replay/azurite.py starts it); 3.36+ need a newer Node than ours.
AZURITE := .tools/azurite/node_modules/.bin/azurite
$(AZURITE):
	npm install --prefix .tools/azurite --no-audit --no-fund --loglevel=error azurite@3.35.0
azurite: $(AZURITE)

# Services the tests need are installed and started by the test session itself (see tests/kit/services.py).
# Three pytest-xdist workers on two cores (each starts its own Azurite on free ports): serial, the suite spends about a
# third of its wall time waiting (Azurite, child processes, sleeps, leases expiring), which the other workers fill. On
# the shared 2-core machine: 4:47 and 5:29 with two workers against 5:42 serial (2026-12-02, 2,383 tests); with
# 2,578 tests, back to back at 15:35: 5:29 with two, 4:50 with three. Targeted runs stay serial.
test: $(TSTAMP) lint $(AZURITE)
	$(VENV)/bin/pytest -n 3

# Figures on synthetic tenants (docs/benchmarks.md, docs/benchmarks.json); under 10 minutes on 2 cores.
bench: $(STAMP)
	$(COMPILE)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .grimp_cache build .hypothesis test-artifacts

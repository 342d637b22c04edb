# The two commands of the README: `make run` (the embedded default) and `make test`.
VENV ?= .venv
CORES ?= all
ARGS ?=

.PHONY: setup run test lint
setup:
	bash scripts/setup.sh

# A config file with a YAML error is named with its line first (Snakemake's message names no file).
# A lock left by a killed run is removed first (never while a run is alive here); with the profile's
# rerun-incomplete, the run then finishes what the dead one left, reusing everything complete.
run: setup
	$(VENV)/bin/em check-config -- $(ARGS)
	$(VENV)/bin/em unlock-stale
	$(VENV)/bin/snakemake --cores $(CORES) $(ARGS)

test: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

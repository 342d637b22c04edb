# The two commands of the README: `make run` (the embedded default) and `make test`.
VENV ?= .venv
CORES ?= all

.PHONY: setup run test lint
setup:
	bash scripts/setup.sh

run: setup
	$(VENV)/bin/snakemake --cores $(CORES)

test: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

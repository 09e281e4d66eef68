# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/ductile system start --config examples/quickstart

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: $(STAMP)
	$(BIN)/ruff check ductile tests bench
	$(BIN)/python -m pytest -q -m "not slow"; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check ductile tests bench
	$(BIN)/ruff format --check ductile tests bench

bench: $(STAMP)
	$(BIN)/python bench/append.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/ductile system start --config examples/quickstart

# Most tests wait on a daemon or a plugin process rather than on the CPU, so two workers shorten
# the run even on two cores; a module's tests stay in one worker (--dist loadfile), so a module's
# shared daemon starts once. TEST_WORKERS=0 runs them all in one process.
TEST_WORKERS ?= 2

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: $(STAMP)
	$(BIN)/ruff check ductile tests bench
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

# The long crash soak (tests/chaos/, >= 1,000 jobs x 20 SIGKILLs); DUCTILE_SOAK_SEED=<n> replays a run.
soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -m slow tests/chaos

lint: $(STAMP)
	$(BIN)/ruff check ductile tests bench
	$(BIN)/ruff format --check ductile tests bench

bench: $(STAMP)
	$(BIN)/python bench/append.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/api.py --floor
	$(BIN)/python bench/rebuild.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

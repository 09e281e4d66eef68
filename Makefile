# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
RUNTIME_LOCK := requirements-runtime.lock

.PHONY: run test lint bench soak clean lock dist

# Every install is the lock (docs/installing.md): exact versions, each checked against its hash, the
# build backend included, so the editable install of Ductile itself needs nothing from the index.
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Re-lock after changing a dependency in pyproject.toml (pins that still fit are kept; `make lock
# UPGRADE=--upgrade` moves every pin to the newest release within its bounds): the whole tree (runtime, the test and
# postgres extras, the build backend) into $(LOCK), and the runtime alone, at the same versions, into
# $(RUNTIME_LOCK) for installs from a wheel. Both are stamped with pyproject's requirements, so a
# test fails when the two disagree. LOCK_ENV keeps this machine's pip configuration (mirrors, local
# wheel dirs) out of the resolution, so every hash is the package index's.
LOCK_ENV ?= PIP_CONFIG_FILE=/dev/null
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links --strip-extras
lock: $(STAMP)
	$(LOCK_ENV) $(BIN)/pip-compile $(LOCK_FLAGS) $(UPGRADE) --all-build-deps --extra test --extra postgres \
		--output-file $(LOCK) pyproject.toml
	$(LOCK_ENV) $(BIN)/pip-compile $(LOCK_FLAGS) --constraint $(LOCK) --output-file $(RUNTIME_LOCK) pyproject.toml
	$(BIN)/python -m tests.lockfile $(LOCK) $(RUNTIME_LOCK)

# The wheel and the sdist in dist/, built with the locked backend already in the venv.
dist: $(STAMP)
	$(BIN)/python -m build --no-isolation --outdir dist

run: $(STAMP)
	$(BIN)/ductile system start --config examples/quickstart

# Most tests wait on a daemon or a plugin process rather than on the CPU, so two workers shorten
# the run even on two cores; a module's tests stay in one worker (--dist loadfile), so a module's
# shared daemon starts once. Files go out longest first, in the order tests/file_order.py gives them
# (--no-loadscope-reorder: xdist would reorder by test count), so both workers end together.
# TEST_WORKERS=0 runs them all in one process.
TEST_WORKERS ?= 2

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: $(STAMP)
	$(BIN)/ruff check ductile tests bench
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

# The long crash soak (tests/chaos/, >= 1,000 jobs x 20 SIGKILLs); DUCTILE_SOAK_SEED=<n> replays a run.
soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -m slow tests/chaos

# The lint rules only (tests/unit/test_ruff_clean.py runs the same in CI): the code is wrapped by
# hand, so ruff's formatter is not part of it.
lint: $(STAMP)
	$(BIN)/ruff check ductile tests bench

bench: $(STAMP)
	$(BIN)/python bench/append.py
	$(BIN)/python bench/jobs.py --floor
	$(BIN)/python bench/e2e.py --floor
	$(BIN)/python bench/api.py --floor
	$(BIN)/python bench/rebuild.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

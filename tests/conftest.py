"""Suite-wide test settings."""

import compileall
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.file_order import load_seconds, longest_first
from tests.pg_server import SKIP_ENV, PgServer, PostgresUnavailable, start_server

# The suite runs on 2-core machines beside real daemons: a per-example deadline would turn a busy
# moment into a failure that says nothing about the code. Hypothesis still reports slow examples.
settings.register_profile("ductile", deadline=None)
settings.load_profile("ductile")


def pytest_configure(config: pytest.Config) -> None:
    # The suite starts hundreds of gateways and CLI processes from this checkout. Where
    # PYTHONDONTWRITEBYTECODE is set (as on CI), none of them leaves bytecode behind, so each one
    # compiled every module of Ductile again: 0.2-0.4 s of CPU a process. Compiling once here (the
    # controller, before any xdist worker starts) lets every process read the cached bytecode.
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(Path(__file__).parent.parent / "ductile", quiet=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items[:] = longest_first(items, load_seconds())  # see tests/file_order.py


# --- A throwaway PostgreSQL server (issue 17) -------------------------------------------------
# Started lazily, once per pytest(-xdist) worker, by the first test that asks for `pg_url`; stopped
# (`pg_ctl stop -m immediate`) and its directory removed when the session ends, failed or not.
# No server binaries is an error with the reason, not a silent skip: `make test` on a fresh
# machine must run these tests. DUCTILE_TEST_POSTGRES=skip skips them explicitly;
# DUCTILE_TEST_POSTGRES_BIN=/path/to/bin names the directory holding initdb and pg_ctl.


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if os.environ.get(SKIP_ENV) == "skip":
        pytest.skip(f"{SKIP_ENV}=skip")
    try:
        server: PgServer | None = start_server()
    except PostgresUnavailable as e:
        server, reason = None, str(e)
    if server is None:  # failed outside the except block: one message, not two chained tracebacks
        pytest.fail(f"cannot start a PostgreSQL server for the tests: {reason}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A ``postgresql://`` URL of a fresh, empty database, dropped after the test."""
    with pg_server.fresh_database() as url:
        yield url

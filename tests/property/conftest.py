"""Property tests that take ``fresh_store`` run once per store (tests/stores.py)."""

from tests.stores import fresh_store

__all__ = ["fresh_store"]  # the fixture, re-exported for the tests of this folder

"""A management socket path longer than this platform's unix sockets hold is refused with what to do
about it, before anything is created: the default path sits in the state directory, so a deep one
is the usual cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductile.api.server import UNIX_PATH_MAX, ManagementSocketRefused, bind_management_socket


def test_a_path_too_long_for_a_unix_socket_is_refused_with_the_key_to_change(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * (UNIX_PATH_MAX - len(str(tmp_path))))
    path = deep / "ductile.sock"
    with pytest.raises(ManagementSocketRefused) as refused:
        bind_management_socket(path)
    assert str(refused.value) == (f"management socket path {path} is {len(str(path))} bytes, more than a unix socket "
                                  f"allows ({UNIX_PATH_MAX}); set api.management_socket to a shorter path")
    assert not deep.exists()


def test_the_longest_path_a_unix_socket_holds_still_binds(tmp_path: Path) -> None:
    path = tmp_path / ("s" * (UNIX_PATH_MAX - len(str(tmp_path)) - 1))
    assert len(str(path)) == UNIX_PATH_MAX
    sock = bind_management_socket(path)
    try:
        assert path.is_socket()
    finally:
        sock.close()

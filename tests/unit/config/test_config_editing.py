"""The write rules of a config edit (config.md §9 --apply, used by §10's config token): .bak,
atomic write keeping the mode, re-validation, the original restored on failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ductile.config import ConfigSource
from ductile.config.editing import ConfigEditFailed, edit, owning_file
from tests.unit.config.conftest import Load, Write

ROOT = "plugin_roots: [plugins]\napi: {listen: '127.0.0.1:9000'}\n"


def test_an_edit_keeps_a_bak_and_the_mode(write: Write, load: Load, config_dir: Path) -> None:
    path = write("config.yaml", ROOT)
    path.chmod(0o640)
    source = load().source

    def add(data: dict[str, Any]) -> None:
        data["api"]["auth"] = {"tokens": [{"secret_ref": "api-token-ci", "scopes": ["jobs:ro"]}]}

    after = edit(source, owning_file(load(), "api"), add, lambda cfg: None).config
    assert [t.secret_ref for t in after.api.tokens] == ["api-token-ci"]
    assert (config_dir / "config.yaml.bak").read_text() == ROOT
    assert path.stat().st_mode & 0o777 == 0o640


def test_an_edit_that_does_not_validate_is_restored(write: Write, load: Load) -> None:
    path = write("config.yaml", ROOT)
    source = ConfigSource(root_file=path, config_dir=path.parent, source="explicit")

    def break_it(data: dict[str, Any]) -> None:
        data["api"]["listen"] = "nowhere"

    with pytest.raises(ConfigEditFailed) as caught:
        edit(source, path, break_it, lambda cfg: None)
    assert str(caught.value) == ('validation failed: config.yaml:2: api.listen: invalid address "nowhere" '
                                 '(expected host:port) (restored config.yaml)')
    assert path.read_text() == ROOT


def test_the_file_that_holds_api_is_the_target(write: Write, load: Load, config_dir: Path) -> None:
    write("config.yaml", "plugin_roots: [plugins]\ninclude: [api.yaml]\n")
    write("api.yaml", "api: {enabled: false}\n")
    assert owning_file(load(), "api") == config_dir / "api.yaml"
    assert owning_file(load(), "webhooks") == config_dir / "config.yaml"

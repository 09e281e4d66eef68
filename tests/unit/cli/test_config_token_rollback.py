"""config.md §10 step 4: when the config edit fails after the secret was stored, the new secret is
revoked and the command fails, so no live token is left behind that no entry names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductile.app.vault import VaultKeeper, init_vault
from ductile.cli import config as config_cli
from ductile.cli.output import CliFailure
from ductile.config import editing
from ductile.vault.keys import generate_identity, load_keyring, write_key_file
from ductile.vocabulary import SecretStatus

CONFIG = "plugin_roots: [plugins]\nstate: {path: data/ductile.db}\napi: {enabled: true}\n"


def test_a_failed_config_edit_revokes_the_new_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUCTILE_AGE_KEY_FILE", raising=False)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "config.yaml").write_text(CONFIG)
    write_key_file(tmp_path / "age.key", generate_identity(), "test")
    init_vault(tmp_path / "vault.age", load_keyring(tmp_path / "age.key"), None)

    def refuse(*_: object) -> None:
        raise editing.ConfigEditFailed("validation failed: boom (restored config.yaml)")

    monkeypatch.setattr(editing, "edit", refuse)
    with pytest.raises(CliFailure) as caught:
        config_cli.create(name="ci", scopes="jobs:ro", config=str(tmp_path))
    assert caught.value.message == "validation failed: boom (restored config.yaml)"
    assert capsys.readouterr().out == ""  # the token is never shown
    document = VaultKeeper.load(tmp_path / "vault.age", load_keyring(tmp_path / "age.key"), None).document()
    assert document is not None
    secret = document.secrets["api-token-ci"]
    assert (secret.status, secret.value) == (SecretStatus.REVOKED, "")
    assert (tmp_path / "config.yaml").read_text() == CONFIG

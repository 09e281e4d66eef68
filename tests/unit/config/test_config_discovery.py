"""Finding the config directory (spec config.md §1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductile.config import ConfigError, find_config


def _dir_with_root(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("plugin_roots: [plugins]\n")
    return path


def test_both_flags_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        find_config(config=str(tmp_path), config_dir=str(tmp_path), environ={}, home=tmp_path)
    assert str(error.value) == "use only one of --config or --config-dir"


def test_config_flag_with_a_directory_resolves_to_its_config_yaml(tmp_path: Path) -> None:
    directory = _dir_with_root(tmp_path / "etc")
    source = find_config(config=str(directory), environ={}, home=tmp_path)
    assert source.root_file == directory / "config.yaml"
    assert source.config_dir == directory
    assert source.source == "explicit"


def test_config_flag_with_a_file_uses_it_as_root_and_its_directory_as_config_dir(tmp_path: Path) -> None:
    root = tmp_path / "elsewhere" / "gateway.yaml"
    root.parent.mkdir()
    root.write_text("{}\n")
    source = find_config(config=str(root), environ={}, home=tmp_path)
    assert source.root_file == root
    assert source.config_dir == root.parent
    assert source.source == "explicit"


def test_config_dir_flag_is_explicit(tmp_path: Path) -> None:
    directory = _dir_with_root(tmp_path / "d")
    source = find_config(config_dir=str(directory), environ={"DUCTILE_CONFIG_DIR": "/nowhere"}, home=tmp_path)
    assert (source.config_dir, source.source) == (directory, "explicit")


def test_relative_config_flag_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dir_with_root(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    source = find_config(config="rel", environ={}, home=tmp_path)
    assert source.root_file == tmp_path / "rel" / "config.yaml"


def test_directory_without_config_yaml_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as error:
        find_config(config_dir=str(tmp_path / "empty"), environ={}, home=tmp_path)
    assert str(error.value) == f"config.yaml not found in {tmp_path / 'empty'}"


def test_env_var_is_used_when_the_path_exists(tmp_path: Path) -> None:
    directory = _dir_with_root(tmp_path / "from-env")
    _dir_with_root(tmp_path / "home" / ".config" / "ductile")
    source = find_config(environ={"DUCTILE_CONFIG_DIR": str(directory)}, home=tmp_path / "home")
    assert (source.config_dir, source.source) == (directory, "env:DUCTILE_CONFIG_DIR")


def test_env_var_pointing_nowhere_falls_through_to_the_home_directory(tmp_path: Path) -> None:
    home_config = _dir_with_root(tmp_path / "home" / ".config" / "ductile")
    source = find_config(
        environ={"DUCTILE_CONFIG_DIR": str(tmp_path / "missing")},
        home=tmp_path / "home",
        system_dir=tmp_path / "etc-ductile",
    )
    assert (source.config_dir, source.source) == (home_config, "auto-discovered")


def test_system_directory_is_the_last_candidate(tmp_path: Path) -> None:
    system = _dir_with_root(tmp_path / "etc-ductile")
    source = find_config(environ={}, home=tmp_path / "home", system_dir=system)
    assert (source.config_dir, source.source) == (system, "auto-discovered")


def test_home_directory_defaults_to_home_env_var(tmp_path: Path) -> None:
    home_config = _dir_with_root(tmp_path / "h" / ".config" / "ductile")
    source = find_config(environ={"HOME": str(tmp_path / "h")}, system_dir=tmp_path / "none")
    assert source.config_dir == home_config


def test_nothing_found_names_every_candidate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        find_config(environ={}, home=tmp_path, system_dir=tmp_path / "no-etc")
    assert str(error.value) == (
        "no config found (checked: $DUCTILE_CONFIG_DIR, ~/.config/ductile, /etc/ductile)"
    )


def test_discovered_directory_without_config_yaml_is_an_error(tmp_path: Path) -> None:
    (tmp_path / ".config" / "ductile").mkdir(parents=True)
    with pytest.raises(ConfigError) as error:
        find_config(environ={}, home=tmp_path, system_dir=tmp_path / "no-etc")
    assert str(error.value) == f"config.yaml not found in {tmp_path / '.config' / 'ductile'}"

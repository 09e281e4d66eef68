"""Discovery over real plugin trees (plugins.md §1 and its acceptance checklist)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ductile.plugins.discovery import (
    MSG_DUPLICATE,
    MSG_FAILED,
    DiscoveryError,
    DiscoveryLog,
    discover,
)

WritePlugin = Callable[..., Path]  # the `write_plugin` fixture from conftest.py


def warnings_with(logs: list[DiscoveryLog], msg: str) -> list[DiscoveryLog]:
    return [log for log in logs if log.msg == msg and log.level == "WARN"]


def test_plugin_is_found_with_resolved_paths(tmp_path: Path, write_plugin: WritePlugin) -> None:
    directory = write_plugin(tmp_path / "root" / "echo", "echo")
    plugins, logs = discover([tmp_path / "root"])
    assert list(plugins) == ["echo"]
    found = plugins["echo"]
    assert found.manifest.name == "echo"
    assert found.directory == directory.resolve()
    assert found.manifest_path == directory.resolve() / "manifest.yaml"
    assert found.entrypoint == directory.resolve() / "run.sh"
    assert found.entrypoint.is_absolute()
    assert logs == []


def test_identity_is_the_manifest_name_not_the_directory_name(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    write_plugin(tmp_path / "root" / "some-folder", "notify")
    plugins, _ = discover([tmp_path / "root"])
    assert list(plugins) == ["notify"]


def test_duplicate_in_two_roots_keeps_the_first_root(tmp_path: Path, write_plugin: WritePlugin) -> None:
    first = write_plugin(tmp_path / "a" / "x", "x")
    second = write_plugin(tmp_path / "b" / "x", "x")
    plugins, logs = discover([tmp_path / "a", tmp_path / "b"])
    assert plugins["x"].directory == first.resolve()
    assert warnings_with(logs, MSG_DUPLICATE) == [
        DiscoveryLog(
            level="WARN",
            msg="duplicate plugin ignored (keeping first discovered)",
            fields={
                "name": "x",
                "kept": str(first.resolve() / "manifest.yaml"),
                "ignored": str(second.resolve() / "manifest.yaml"),
            },
        )
    ]


def test_duplicate_inside_one_root_keeps_the_lexically_first(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    write_plugin(tmp_path / "root" / "zeta", "x")
    alpha = write_plugin(tmp_path / "root" / "alpha", "x")
    plugins, logs = discover([tmp_path / "root"])
    assert plugins["x"].directory == alpha.resolve()
    assert len(warnings_with(logs, MSG_DUPLICATE)) == 1


def test_roots_are_walked_in_config_order(tmp_path: Path, write_plugin: WritePlugin) -> None:
    write_plugin(tmp_path / "a" / "x", "x")
    later = write_plugin(tmp_path / "b" / "x", "x")
    plugins, _ = discover([tmp_path / "b", tmp_path / "a"])
    assert plugins["x"].directory == later.resolve()


def test_manifest_three_levels_deep_is_discovered(tmp_path: Path, write_plugin: WritePlugin) -> None:
    deep = write_plugin(tmp_path / "root" / "team" / "infra" / "backup", "backup")
    plugins, logs = discover([tmp_path / "root"])
    assert plugins["backup"].directory == deep.resolve()
    assert logs == []


@pytest.mark.parametrize(
    "hint", ["run.py", "run.sh", "main.go", "main.py", "index.js", "index.ts", "run.js", "run.ts"]
)
def test_root_subdirectory_with_an_entrypoint_but_no_manifest_is_warned_about(
    tmp_path: Path, hint: str
) -> None:
    stray = tmp_path / "root" / "half-done"
    stray.mkdir(parents=True)
    (stray / hint).write_text("")
    plugins, logs = discover([tmp_path / "root"])
    assert plugins == {}
    assert logs == [
        DiscoveryLog(
            level="WARN",
            msg="plugin directory missing manifest.yaml — directory will be ignored",
            fields={"path": str(stray.resolve()), "hint": "add a manifest.yaml or remove the directory"},
        )
    ]


def test_missing_manifest_warning_is_only_for_immediate_subdirectories(tmp_path: Path) -> None:
    deeper = tmp_path / "root" / "group" / "half-done"
    deeper.mkdir(parents=True)
    (deeper / "run.py").write_text("")
    plain = tmp_path / "root" / "docs"
    plain.mkdir()
    (plain / "README.md").write_text("")
    assert discover([tmp_path / "root"]) == ({}, [])


def test_hidden_node_modules_and_pycache_directories_are_not_walked(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    for skipped in (".git", ".cache", "node_modules", "__pycache__"):
        write_plugin(tmp_path / "root" / "p" / skipped / "inner", f"hidden-{skipped.strip('._')}")
    write_plugin(tmp_path / "root" / "p", "visible")
    plugins, logs = discover([tmp_path / "root"])
    assert list(plugins) == ["visible"]
    assert logs == []


def test_file_named_differently_does_not_mark_a_plugin(tmp_path: Path) -> None:
    directory = tmp_path / "root" / "p"
    directory.mkdir(parents=True)
    (directory / "manifest.yml").write_text("name: p\n")
    assert discover([tmp_path / "root"]) == ({}, [])


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ({"protocol": 1}, "unsupported protocol version: 1"),
        ({"entrypoint": "../escape.sh"}, "entrypoint must not contain '..': ../escape.sh"),
        ({"entrypoint": "bin/../run.sh"}, "entrypoint must not contain '..': bin/../run.sh"),
        ({"entrypoint": "/usr/bin/env"}, "entrypoint must be a relative path: /usr/bin/env"),
        ({"entrypoint_mode": 0o644}, "entrypoint is not executable: "),
        ({"create_entrypoint": False}, "entrypoint not found: "),
    ],
)
def test_untrusted_or_invalid_plugin_is_skipped_and_the_walk_goes_on(
    tmp_path: Path, write_plugin: WritePlugin, setup: dict, error: str
) -> None:
    bad = write_plugin(tmp_path / "root" / "bad", "bad", **setup)
    write_plugin(tmp_path / "root" / "good", "good")
    plugins, logs = discover([tmp_path / "root"])
    assert list(plugins) == ["good"]
    [failure] = warnings_with(logs, MSG_FAILED)
    assert failure.msg == "failed to load plugin"
    assert failure.fields["path"] == str(bad.resolve() / "manifest.yaml")
    assert failure.fields["error"].startswith(error)


def test_world_writable_plugin_directory_is_skipped(tmp_path: Path, write_plugin: WritePlugin) -> None:
    bad = write_plugin(tmp_path / "root" / "bad", "bad")
    bad.chmod(0o777)
    plugins, logs = discover([tmp_path / "root"])
    assert plugins == {}
    [failure] = warnings_with(logs, MSG_FAILED)
    assert failure.fields["error"] == f"plugin directory is world-writable: {bad.resolve()}"


def test_entrypoint_that_is_a_directory_is_skipped(tmp_path: Path, write_plugin: WritePlugin) -> None:
    bad = write_plugin(tmp_path / "root" / "bad", "bad", create_entrypoint=False)
    (bad / "run.sh").mkdir(mode=0o755)
    plugins, logs = discover([tmp_path / "root"])
    assert plugins == {}
    [failure] = warnings_with(logs, MSG_FAILED)
    assert failure.fields["error"] == f"entrypoint is not a regular file: {(bad / 'run.sh').resolve()}"


def test_only_one_execute_bit_is_needed(tmp_path: Path, write_plugin: WritePlugin) -> None:
    write_plugin(tmp_path / "root" / "p", "p", entrypoint_mode=0o610)
    plugins, _ = discover([tmp_path / "root"])
    assert "p" in plugins


def test_nested_entrypoint_path_inside_the_plugin_is_allowed(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    directory = write_plugin(tmp_path / "root" / "p", "p", entrypoint="bin/run")
    plugins, _ = discover([tmp_path / "root"])
    assert plugins["p"].entrypoint == directory.resolve() / "bin" / "run"


def test_unparsable_manifest_is_skipped_with_the_parse_error(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    bad = tmp_path / "root" / "bad"
    bad.mkdir(parents=True)
    (bad / "manifest.yaml").write_text("name: [oops\n")
    write_plugin(tmp_path / "root" / "good", "good")
    plugins, logs = discover([tmp_path / "root"])
    assert list(plugins) == ["good"]
    [failure] = warnings_with(logs, MSG_FAILED)
    assert failure.fields["error"].startswith("invalid YAML:")


def test_unknown_manifest_keys_are_logged_at_debug(tmp_path: Path, write_plugin: WritePlugin) -> None:
    manifest = "x-vendor: 1\n" + (
        "manifest_spec: ductile.plugin\nmanifest_version: 1\nname: {name}\nprotocol: {protocol}\n"
        "entrypoint: {entrypoint}\ncommands: [{{name: poll}}]\n"
    )
    write_plugin(tmp_path / "root" / "p", "p", manifest=manifest)
    plugins, logs = discover([tmp_path / "root"])
    assert "p" in plugins
    assert [(log.level, log.fields["keys"]) for log in logs] == [("DEBUG", ["x-vendor"])]


def test_no_roots_is_a_load_error() -> None:
    with pytest.raises(DiscoveryError, match=r"^plugin_roots is required \(at least one directory\)$"):
        discover([])


def test_missing_root_is_a_load_error_naming_its_index(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    missing = tmp_path / "nope"
    with pytest.raises(DiscoveryError) as caught:
        discover([tmp_path / "a", missing])
    assert str(caught.value) == f"plugin_roots[1]: {missing} is not a directory"


def test_root_that_is_a_file_is_a_load_error(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(DiscoveryError, match=r"plugin_roots\[0\]: .* is not a directory"):
        discover([afile])


def test_relative_root_is_reported_as_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DiscoveryError) as caught:
        discover([Path("plugins")])
    assert str(caught.value) == f"plugin_roots[0]: {tmp_path / 'plugins'} is not a directory"


def test_same_root_twice_is_walked_once(tmp_path: Path, write_plugin: WritePlugin) -> None:
    write_plugin(tmp_path / "root" / "p", "p")
    plugins, logs = discover([tmp_path / "root", tmp_path / "root"])
    assert list(plugins) == ["p"]
    assert logs == []


# --- symlinks ---------------------------------------------------------------------------------


def symlink_message(path: Path) -> str:
    return f"symlink not allowed: {path} (set service.allow_symlinks: true to permit)"


def test_symlinked_root_is_refused_without_the_opt_in(tmp_path: Path, write_plugin: WritePlugin) -> None:
    write_plugin(tmp_path / "real" / "p", "p")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real")
    with pytest.raises(DiscoveryError) as caught:
        discover([link])
    assert str(caught.value) == symlink_message(link)


def test_symlinked_root_is_resolved_and_warned_with_the_opt_in(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    real = write_plugin(tmp_path / "real" / "p", "p")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real")
    plugins, logs = discover([link], allow_symlinks=True)
    assert plugins["p"].directory == real.resolve()
    assert [(log.level, log.fields) for log in logs] == [
        ("WARN", {"path": str(link), "target": str((tmp_path / "real").resolve())})
    ]


def test_symlinked_plugin_directory_is_refused_without_the_opt_in(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    write_plugin(tmp_path / "elsewhere" / "p", "p")
    (tmp_path / "root").mkdir()
    link = tmp_path / "root" / "p"
    link.symlink_to(tmp_path / "elsewhere" / "p")
    with pytest.raises(DiscoveryError) as caught:
        discover([tmp_path / "root"])
    assert str(caught.value) == symlink_message(link)


def test_symlinked_plugin_directory_is_followed_with_the_opt_in(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    real = write_plugin(tmp_path / "roots" / "shared" / "p", "p")
    (tmp_path / "roots" / "main").mkdir()
    (tmp_path / "roots" / "main" / "p").symlink_to(real)
    plugins, logs = discover(
        [tmp_path / "roots" / "main", tmp_path / "roots" / "shared"], allow_symlinks=True
    )
    assert plugins["p"].directory == real.resolve()
    assert [log.level for log in logs] == ["WARN"]  # the followed link; the second sighting is not walked


def test_plugin_reached_through_a_symlink_must_still_live_inside_a_root(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    write_plugin(tmp_path / "outside" / "p", "p")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "p").symlink_to(tmp_path / "outside" / "p")
    plugins, logs = discover([tmp_path / "root"], allow_symlinks=True)
    assert plugins == {}
    [failure] = warnings_with(logs, MSG_FAILED)
    assert failure.fields["error"].startswith("entrypoint resolves outside plugin_roots: ")


def test_symlinked_directory_without_a_manifest_is_skipped_without_the_opt_in(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    write_plugin(tmp_path / "elsewhere" / "deep" / "p", "p")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "shortcut").symlink_to(tmp_path / "elsewhere")
    plugins, logs = discover([tmp_path / "root"])
    assert plugins == {}
    assert [log.level for log in logs] == ["DEBUG"]


def test_symlink_loop_is_walked_once_with_the_opt_in(tmp_path: Path, write_plugin: WritePlugin) -> None:
    write_plugin(tmp_path / "root" / "p", "p")
    (tmp_path / "root" / "p" / "loop").symlink_to(tmp_path / "root")
    plugins, logs = discover([tmp_path / "root"], allow_symlinks=True)
    assert list(plugins) == ["p"]
    assert warnings_with(logs, MSG_DUPLICATE) == []


def test_symlinked_manifest_is_refused_without_the_opt_in(tmp_path: Path, write_plugin: WritePlugin) -> None:
    directory = write_plugin(tmp_path / "root" / "p", "p")
    (directory / "manifest.yaml").rename(tmp_path / "kept.yaml")
    (directory / "manifest.yaml").symlink_to(tmp_path / "kept.yaml")
    with pytest.raises(DiscoveryError) as caught:
        discover([tmp_path / "root"])
    assert str(caught.value) == symlink_message(directory.resolve() / "manifest.yaml")


def test_symlinked_manifest_is_read_through_with_the_opt_in(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    directory = write_plugin(tmp_path / "root" / "p", "p")
    (directory / "manifest.yaml").rename(tmp_path / "kept.yaml")
    (directory / "manifest.yaml").symlink_to(tmp_path / "kept.yaml")
    plugins, logs = discover([tmp_path / "root"], allow_symlinks=True)
    assert plugins["p"].manifest_path == (tmp_path / "kept.yaml").resolve()
    assert plugins["p"].directory == directory.resolve()
    assert [log.level for log in logs] == ["WARN"]


def test_symlinked_entrypoint_is_refused_without_the_opt_in(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    directory = write_plugin(tmp_path / "root" / "p", "p", entrypoint="run")
    (directory / "run").rename(directory / "real-run")
    (directory / "run").symlink_to(directory / "real-run")
    with pytest.raises(DiscoveryError) as caught:
        discover([tmp_path / "root"])
    assert str(caught.value) == symlink_message(directory.resolve() / "run")


def test_symlinked_entrypoint_inside_the_plugin_is_resolved_with_the_opt_in(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    directory = write_plugin(tmp_path / "root" / "p", "p", entrypoint="run")
    (directory / "run").rename(directory / "real-run")
    (directory / "run").symlink_to("real-run")
    plugins, logs = discover([tmp_path / "root"], allow_symlinks=True)
    assert plugins["p"].entrypoint == directory.resolve() / "real-run"
    assert [log.level for log in logs] == ["WARN"]


def test_symlinked_entrypoint_escaping_the_plugin_is_skipped(
    tmp_path: Path, write_plugin: WritePlugin
) -> None:
    directory = write_plugin(tmp_path / "root" / "p", "p", entrypoint="run", create_entrypoint=False)
    outside = tmp_path / "tool"
    outside.write_text("#!/bin/sh\n")
    outside.chmod(0o755)
    (directory / "run").symlink_to(outside)
    plugins, logs = discover([tmp_path / "root"], allow_symlinks=True)
    assert plugins == {}
    [failure] = warnings_with(logs, MSG_FAILED)
    assert failure.fields["error"] == f"entrypoint resolves outside the plugin directory: {outside.resolve()}"


def test_symlink_loops_never_crash_the_walk(tmp_path: Path, write_plugin: WritePlugin) -> None:
    loop_entry = write_plugin(tmp_path / "root" / "a", "a", entrypoint="run", create_entrypoint=False)
    (loop_entry / "run").symlink_to("run")
    loop_manifest = tmp_path / "root" / "b"
    loop_manifest.mkdir(mode=0o755)
    (loop_manifest / "manifest.yaml").symlink_to("manifest.yaml")
    (tmp_path / "root" / "c").symlink_to(tmp_path / "root" / "c")
    plugins, logs = discover([tmp_path / "root"], allow_symlinks=True)
    assert plugins == {}
    failures = warnings_with(logs, MSG_FAILED)
    assert [f.fields["path"] for f in failures] == [
        str(loop_entry.resolve() / "manifest.yaml"),
        str(loop_manifest.resolve() / "manifest.yaml"),
    ]
    assert failures[0].fields["error"].startswith("entrypoint cannot be inspected: ")

"""Editing a config file in place (config.md §9 ``config set``, §10 ``config token``).

The one home of the write rules every config edit follows: the target is the file whose own
content provides the key (else the root ``config.yaml``); encrypted files are refused; the
original is copied to ``<file>.bak``; the new text is written atomically (temp file, fsync,
rename, the file's mode and owner kept); the whole config is then loaded again and the caller's
check run on it. On any failure the original bytes are put back and ``ConfigEditFailed`` says
``validation failed: <error> (restored <file>)``.

The file is read and written with ruamel.yaml's round-trip mode, so comments, key order, flow
style and every untouched line survive; PyYAML (the loader's parser) would drop the comments.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RoundTripError

from ductile.config.atomic import replace_file
from ductile.config.discovery import ConfigSource
from ductile.config.documents import display_name
from ductile.config.errors import ConfigError
from ductile.config.loader import load_config
from ductile.config.locations import KeyPath, dotted
from ductile.config.merging import PER_FILE_KEYS
from ductile.config.model import Config
from ductile.config.plaintext import is_age_data, read_plaintext, substituted
from ductile.config.yaml_core import parse_yaml

Change = Callable[[dict[str, Any]], None]
Check = Callable[[Config], None]


class ConfigEditFailed(Exception):
    """An edit that was not made (the file is as it was); the message is for the user.

    ``text`` is the edited file's content when the edit itself was made and what failed was the
    load or check after it, so a dry run can still report on the edited config."""

    def __init__(self, message: str, text: bytes | None = None) -> None:
        super().__init__(message)
        self.text = text


class Edited(NamedTuple):
    config: Config  # loaded again after the edit
    text: bytes  # the file's new content (with a dry run, what it would be)


def owning_file(config: Config, top_key: str) -> Path:
    """The last loaded YAML file whose own top level holds ``top_key`` (its list entries merge
    last), else the root file."""
    owner = config.source.root_file
    for path in config.files:
        if path.suffix not in (".yaml", ".yml") or not path.exists():
            continue
        with contextlib.suppress(OSError, yaml.YAMLError, UnicodeDecodeError):
            content = path.read_bytes()
            if is_age_data(content):
                continue
            data = yaml.safe_load(content.decode("utf-8-sig"))
            if isinstance(data, dict) and top_key in data:
                owner = path
    return owner


def target_file(config: Config, path: KeyPath) -> Path:
    """The file whose own content provides ``path`` (config.md §9): for ``plugins.<n>.*`` the file
    whose entry won the merge; else the file of the value, or of its nearest ancestor, that is
    set; else the root ``config.yaml``."""
    if len(path) >= 2 and path[0] == "plugins" and isinstance(path[1], str):
        entry = config.plugins.get(path[1])
        if entry is not None and entry.source_file:
            return _absolute(config, entry.source_file)
    for size in range(len(path), 0, -1):
        location = config.locations.get(dotted(path[:size]))
        if location is not None:
            name, _, line = location.rpartition(":")
            return _absolute(config, name if name and line.isdigit() else location)
    return config.source.root_file


def _absolute(config: Config, name: str) -> Path:
    return Path(name) if os.path.isabs(name) else config.source.config_dir / name


def parse_flow_value(text: str) -> Any:
    """A ``config set`` value as a YAML flow value, in the loader's own dialect (``true``, ``42``,
    ``"42"``, ``[a, b]``, ``{k: v}``); an empty value is an empty string."""
    value, _ = parse_yaml(text, "<value>")
    return "" if value is None and text.strip() == "" else value


def set_in(data: Any, path: KeyPath, value: Any) -> None:
    """Set ``path`` in a file's mapping, creating missing mappings on the way; a list index must
    exist in this file."""
    node = data
    for depth, part in enumerate(path[:-1]):
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                raise ConfigEditFailed(f'cannot set "{dotted(path)}": {dotted(path[:depth + 1])} does not exist')
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigEditFailed(f'cannot set "{dotted(path)}": {dotted(path[:depth])} is not a mapping')
        if not isinstance(node.get(part), dict | list):
            node[part] = {}
        node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not 0 <= last < len(node):
            raise ConfigEditFailed(f'cannot set "{dotted(path)}": {dotted(path)} does not exist')
    elif not isinstance(node, dict):
        raise ConfigEditFailed(f'cannot set "{dotted(path[:-1])}" is not a mapping')
    node[last] = value


def edit(source: ConfigSource, path: Path, change: Change, check: Check, *, dry_run: bool = False) -> Edited:
    """Apply ``change`` to the mapping of ``path``, write it under the rules above, and return the
    config loaded again (on which ``check`` raised nothing). With ``dry_run`` the load reads the
    edited text in place of the file and nothing is written."""
    name = display_name(path, source.config_dir)
    original = path.read_bytes() if path.exists() else None
    if original is not None and is_age_data(original):
        raise ConfigEditFailed(f"{name} is encrypted; edit it with 'ductile secrets' instead")
    text = _changed_text(name, original, change)
    if dry_run:
        try:
            with substituted(path, text):  # the check reads the edited text too
                config = load_config(source)
                check(config)
        except (ConfigError, ConfigEditFailed) as exc:
            raise ConfigEditFailed(f"validation failed: {exc}", text) from None
        return Edited(config, text)
    if original is not None:
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    replace_file(path, text)
    try:
        config = load_config(source)
        check(config)
    except (ConfigError, ConfigEditFailed) as exc:
        if original is None:
            path.unlink()
        else:
            replace_file(path, original)
        raise ConfigEditFailed(f"validation failed: {exc} (restored {name})") from None
    return Edited(config, text)


def set_key(config: Config, path: KeyPath, value: Any, *, dry_run: bool,
            validate: Check | None = None) -> tuple[Path, Edited]:
    """``config set``: ``path`` = ``value`` in its target file (``target_file``), which must then be
    the value the merged config has (a later file overriding it fails the edit). ``validate`` is
    the caller's validation of the config after the edit (it raises ``ConfigEditFailed`` on
    errors, and the edit is undone). Returns the file and the config loaded after the edit."""
    target = target_file(config, path)

    def check(after: Config) -> None:
        if validate is not None:
            validate(after)
        from ductile.config.keypaths import KeyPathError, lookup
        from ductile.config.redaction import redact

        try:  # as written: a ``${VAR}`` set is compared as the template, not the environment's value
            effective = lookup(_effective_document(after, target, path), path)
        except KeyPathError:
            effective = None
        if effective != value:
            shown = redact(effective, next((str(k) for k in reversed(path) if isinstance(k, str)), None))
            raise ConfigEditFailed(f'the effective value of "{dotted(path)}" is {shown!r}, '
                                   "not the value set (a later file overrides it)")

    return target, edit(config.source, target, lambda data: set_in(data, path, value), check, dry_run=dry_run)


def _effective_document(after: Config, target: Path, path: KeyPath) -> Any:
    """Where the value set takes effect: the merged config as written, or for a per-file key
    (``include``, ``environment_vars``: each file's own, never merged) the edited file itself."""
    from ductile.config.redaction import written_document

    if path[0] not in PER_FILE_KEYS:
        return written_document(after)
    document, _ = parse_yaml(read_plaintext(target), display_name(target, after.source.config_dir))
    return document


def _round_trip() -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap a long line the edit did not touch
    return rt


def _changed_text(name: str, original: bytes | None, change: Change) -> bytes:
    rt = _round_trip()
    try:
        data = rt.load(original.decode("utf-8-sig")) if original else None
    except (RoundTripError, UnicodeDecodeError) as exc:
        raise ConfigEditFailed(f"{name}: cannot parse: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigEditFailed(f"{name}: expected a mapping of keys at the top level")
    change(data)
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue().encode()



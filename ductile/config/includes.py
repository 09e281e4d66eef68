"""Reading the root file and everything its ``include:`` lists name, depth first (spec config.md §2).

Each file's own ``environment_vars.include`` is applied before that file's values are
interpolated (§3.2), so a file can use the variables its env files define.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from ductile.config.discovery import ConfigSource
from ductile.config.documents import Document, display_name, read_document
from ductile.config.envfiles import add_missing, parse_env_text
from ductile.config.errors import ConfigError
from ductile.config.interpolation import Unresolved, interpolate, interpolate_text
from ductile.config.locations import KeyPath, dotted
from ductile.config.merging import normalize_flat_webhooks, strip_root_only
from ductile.config.model import Diagnostic
from ductile.config.paths import resolve_path
from ductile.config.plaintext import ConfigKeys, read_plaintext


class IncludeWalk:
    """Loads documents in merge order and records every file read."""

    def __init__(self, source: ConfigSource, environ: MutableMapping[str, str], home: Path,
                 errors: list[ConfigError] | None = None) -> None:
        self.source = source
        self.environ = environ
        self.home = home
        self.documents: list[Document] = []
        self.files: list[Path] = []
        self.env_files: list[Path] = []  # the environment_vars.include files read, a subset of files
        self.warnings: list[Diagnostic] = []
        self._seen: set[str] = set()
        self.keys = ConfigKeys(environ, source.config_dir, home)
        # Given a list, an include that fails is recorded there and the walk goes on with the
        # other files (config.md §5); without one, the first failure is raised.
        self.errors = errors

    def run(self) -> IncludeWalk:
        self._visit(self.source.root_file, is_root=True)
        return self

    def _visit(self, path: Path, *, is_root: bool = False, named_by: tuple[Document, KeyPath] | None = None) -> None:
        self._seen.add(os.path.realpath(path))
        self.files.append(path)
        try:
            document = read_document(path, self.source.config_dir, is_root=is_root, keys=self.keys)
        except ConfigError as error:
            if named_by is None or error.file is not None:
                raise
            # A file that cannot be read or decrypted is reported where the include names it.
            raise named_by[0].error(error.message, named_by[1]) from None
        if is_root:
            self.keys.configured = self._configured_key(document)
        self._load_env_files(document)
        document.data = interpolate(document.data, self.environ, document.templates)
        normalize_flat_webhooks(document)
        self.warnings.extend(strip_root_only(document))
        self.documents.append(document)
        for index, target in enumerate(self._list_of_paths(document, ("include",))):
            self._include(document, index, target)

    def _include(self, document: Document, index: int, text: str) -> None:
        key: KeyPath = ("include", index)
        label = f"include[{index}] ({document.name})"
        try:
            path = self._resolve(document, key, text)
            if not path.exists():
                raise document.error(f"{label}: file not found: {path}", key)
            targets = self._directory_files(document, index, path) if path.is_dir() else [path]
        except ConfigError as error:
            self._failed(error)
            return
        for target in targets:
            try:
                if os.path.realpath(target) in self._seen:
                    raise document.error(f"{label}: {target} is already included (circular or repeated include)", key)
                self._visit(target, named_by=(document, key))
            except ConfigError as error:
                self._failed(error)

    def _failed(self, error: ConfigError) -> None:
        if self.errors is None:
            raise error
        self.errors.append(error)

    def _directory_files(self, document: Document, index: int, directory: Path) -> list[Path]:
        files: list[Path] = []
        for entry in sorted(directory.iterdir(), key=lambda item: item.name):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if entry.suffix == ".yaml":
                files.append(entry)
            elif entry.suffix == ".yml":
                self.warnings.append(
                    Diagnostic(
                        level="warning",
                        category="config",
                        field=f"include[{index}]",
                        message=f"include: {entry} ignored (only *.yaml files are loaded)",
                        file=document.name,
                        line=document.line(("include", index)),
                    )
                )
        return files

    def _load_env_files(self, document: Document) -> None:
        for index, raw in enumerate(self._list_of_paths(document, ("environment_vars", "include"))):
            key = ("environment_vars", "include", index)
            path = self._resolve(document, key, interpolate_text(raw, self.environ))
            if not path.is_file():
                # Listed though missing: ``system backup`` warns of it (operations.md §7); the
                # load records the error and goes on with the other files (config.md §5).
                if path not in self.env_files:
                    self.env_files.append(path)
                self._failed(document.error(f"environment_vars.include[{index}]: file not found: {path}", key))
                continue
            name = display_name(path, self.source.config_dir)
            try:
                text = read_plaintext(path, self.keys)
            except ConfigError as error:
                self._failed(document.error(error.message, key))
                continue
            add_missing(self.environ, parse_env_text(text, name))
            if path not in self.files:
                self.files.append(path)
            if path not in self.env_files:
                self.env_files.append(path)

    def _configured_key(self, root: Document) -> str | None:
        """``secrets.age_key_file`` as the root writes it, for decrypting the files read after it."""
        secrets = root.data.get("secrets")
        value = secrets.get("age_key_file") if isinstance(secrets, dict) else None
        if not isinstance(value, str) or not value.strip():
            return None
        text = interpolate_text(value, self.environ)
        return None if isinstance(text, Unresolved) else text

    def _resolve(self, document: Document, key: KeyPath, text: str) -> Path:
        if isinstance(text, Unresolved):
            variable = "${" + text.missing[0] + "}"
            raise document.error(f"{dotted(key)}: environment variable {variable} is not set", key)
        return resolve_path(text, document.path.parent, self.home)

    def _list_of_paths(self, document: Document, key: KeyPath) -> list[str]:
        value: Any = document.data
        for index, part in enumerate(key):
            if value is None:
                return []
            if not isinstance(value, dict):
                raise document.error(f"{dotted(key[:index])}: expected a mapping", key[:index])
            value = value.get(part)
        if value is None:
            return []
        if not isinstance(value, list):
            raise document.error(f"{dotted(key)}: expected a list of paths", key)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise document.error(f"{dotted((*key, index))}: expected a string", (*key, index))
        return value

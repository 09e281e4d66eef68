"""Merging the loaded files in order (spec config.md §2)."""

from __future__ import annotations

import logging
from typing import Any

from ductile.config.documents import Document
from ductile.config.locations import KeyPath, Origins, dotted
from ductile.config.model import Diagnostic

log = logging.getLogger("ductile.config")

# Read per file by the loader, never merged.
PER_FILE_KEYS = frozenset({"include", "environment_vars"})

APPENDED_LISTS: frozenset[KeyPath] = frozenset(
    {
        ("plugin_roots",),
        ("api", "auth", "tokens"),
        ("api", "allowed_origins"),
        ("webhooks", "endpoints"),
        ("pipelines",),
        ("instances",),
        ("remote_ingress", "peers"),
    }
)

ROOT_ONLY_IGNORED = "may only be set in the root config.yaml (ignored)"
ROOT_ONLY_SERVICE_KEYS = (
    "admission",
    "strict_mode",
    "allow_symlinks",
    "plugin_env_passthrough",
    "durability",
)


def strip_root_only(document: Document) -> list[Diagnostic]:
    """Remove the keys only the root config.yaml may set from an included file, with a warning."""
    if document.is_root:
        return []
    removed: list[KeyPath] = []
    service = document.data.get("service")
    if isinstance(service, dict):
        for key in ROOT_ONLY_SERVICE_KEYS:
            if key in service:
                del service[key]
                removed.append(("service", key))
    if "secrets" in document.data:
        secrets = document.data.pop("secrets")
        if isinstance(secrets, dict) and secrets:
            removed.extend(("secrets", str(key)) for key in secrets)
        else:
            removed.append(("secrets",))
    return [
        Diagnostic(
            level="warning",
            category="config",
            field=dotted(path),
            message=f"{document.name}: {dotted(path)} {ROOT_ONLY_IGNORED}",
            file=document.name,
            line=document.line(path),
        )
        for path in removed
    ]


def normalize_flat_webhooks(document: Document) -> None:
    """``webhooks: [endpoint, ...]`` is the flat form of ``webhooks: {endpoints: [...]}``."""
    endpoints = document.data.get("webhooks")
    if not isinstance(endpoints, list):
        return
    document.data["webhooks"] = {"endpoints": endpoints}

    def moved(path: KeyPath) -> KeyPath:
        return ("webhooks", "endpoints", *path[1:]) if path[:1] == ("webhooks",) and len(path) > 1 else path

    document.lines = {moved(path): line for path, line in document.lines.items()} | {
        ("webhooks", "endpoints"): document.lines.get(("webhooks",), 1)
    }
    document.templates = {moved(path): text for path, text in document.templates.items()}
    document.reindex()


class MergeResult:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origins = Origins()
        self.plugin_files: dict[str, str] = {}  # plugin name -> file whose entry won


def merge_documents(documents: list[Document]) -> MergeResult:
    """Merge in load order; later files win."""
    result = MergeResult()
    for document in documents:
        _merge_map(result, result.data, document.data, (), document)
    return result


def _merge_map(
    result: MergeResult, into: dict[Any, Any], new: dict[Any, Any], path: KeyPath, doc: Document
) -> None:
    for key, value in new.items():
        if not path and key in PER_FILE_KEYS:
            continue
        child = (*path, key)
        current = into.get(key)
        if child == ("plugins",) and isinstance(value, dict):
            if not isinstance(current, dict):
                current = into[key] = {}
                result.origins.drop_under(child)
            _set_location(result, child, doc)
            for name, entry in value.items():
                _replace_plugin(result, current, name, entry, doc)
        elif child in APPENDED_LISTS and isinstance(value, list):
            if not isinstance(current, list):
                current = into[key] = []
                result.origins.drop_under(child)
            _set_location(result, child, doc)
            _append(result, current, value, child, doc)
        elif child == ("state", "path") and value in ("", None) and current not in ("", None):
            continue  # a later empty state.path does not clear an earlier one
        elif isinstance(value, dict) and isinstance(current, dict):
            _set_location(result, child, doc)
            _merge_map(result, current, value, child, doc)
        else:
            if key in into:
                result.origins.drop_under(child)
            into[key] = _copy(value)
            _add_locations(result, doc, child, child)


def _replace_plugin(
    result: MergeResult, plugins: dict[Any, Any], name: Any, entry: Any, doc: Document
) -> None:
    # A later entry replaces the whole earlier one: no field merge.
    path: KeyPath = ("plugins", name)
    if name in plugins:
        log.info("plugins.%s from %s replaced by %s", name, result.plugin_files.get(str(name), "?"), doc.name)
        result.origins.drop_under(path)
    plugins[name] = _copy(entry)
    _add_locations(result, doc, path, path)
    result.plugin_files[str(name)] = doc.name


def _append(result: MergeResult, into: list[Any], items: list[Any], path: KeyPath, doc: Document) -> None:
    present = {_scalar_identity(item) for item in into if _is_scalar(item)}
    for index, item in enumerate(items):
        if _is_scalar(item):
            identity = _scalar_identity(item)
            if identity in present:
                continue  # exact duplicate scalar: the first one is kept
            present.add(identity)
        into.append(_copy(item))
        _add_locations(result, doc, (*path, index), (*path, len(into) - 1))


def _set_location(result: MergeResult, path: KeyPath, doc: Document) -> None:
    line = doc.lines.get(path)
    if line is not None:
        result.origins.set(path, doc.location(path))


def _add_locations(result: MergeResult, doc: Document, source: KeyPath, target: KeyPath) -> None:
    """Record every line ``doc`` has under ``source`` as the origin of the same key under ``target``."""
    size = len(source)
    for path in doc.subtree(source):
        result.origins.set((*target, *path[size:]), doc.location(path))
    if result.origins.exact(target) is None:
        result.origins.set(target, doc.location(source))


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _scalar_identity(value: Any) -> tuple[str, Any]:
    # 1, 1.0 and True are equal in Python but are not duplicates of each other in YAML.
    kind = "str" if isinstance(value, str) else type(value).__name__
    return kind, value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value

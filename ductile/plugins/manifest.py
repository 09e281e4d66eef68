"""The plugin manifest (`manifest.yaml`, plugins.md §2).

Parsing is lenient about what it does not know (unknown keys are ignored and reported in
`Manifest.ignored_keys` so discovery can log them at DEBUG) and strict about the rules the spec
lists: a manifest breaking one of them refuses the plugin with a `ManifestError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ductile.formats.yaml12 import YamlError, parse_document, scalar_as_written

MANIFEST_SPEC = "ductile.plugin"
MANIFEST_VERSION = 1
PROTOCOL_VERSION = 2
DEFAULT_STOPWATCH_MAX_SUBS = 32
STOPWATCH_MAX_SUBS_LIMIT = 256
MIRROR_OBJECT = "mirror_object"

_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_COMMAND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_VALUE_PATH = re.compile(r"payload\.(\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)")

_TOP_LEVEL_KEYS = frozenset(
    {
        "manifest_spec",
        "manifest_version",
        "name",
        "version",
        "protocol",
        "entrypoint",
        "description",
        "concurrency_safe",
        "commands",
        "fact_outputs",
        "config_keys",
        "stopwatch",
    }
)
_COMMAND_KEYS = frozenset(
    {"name", "type", "description", "idempotent", "retry_safe", "input_schema", "output_schema", "values"}
)


class ManifestError(Exception):
    """A manifest that cannot be read, parsed or validated; the plugin is refused."""

    def __init__(self, message: str, path: str = "manifest.yaml") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class CommandSpec(msgspec.Struct, frozen=True):
    name: str
    type: str = "write"
    description: str = ""
    idempotent: bool | None = None
    retry_safe: bool | None = None
    input_schema: dict | None = None
    output_schema: dict | None = None


class FactOutput(msgspec.Struct, frozen=True):
    command: str
    fact_type: str
    compatibility_view: str = ""


class Manifest(msgspec.Struct, frozen=True):
    name: str
    version: str
    protocol: int
    entrypoint: str
    description: str
    concurrency_safe: bool
    commands: tuple[CommandSpec, ...]
    fact_outputs: tuple[FactOutput, ...]
    config_required: tuple[str, ...]
    config_optional: tuple[str, ...]
    stopwatch_max_subs: int = DEFAULT_STOPWATCH_MAX_SUBS
    ignored_keys: tuple[str, ...] = ()
    # Command names declared more than once; only the first entry is in ``commands`` (plugins.md §2).
    repeated_commands: tuple[str, ...] = ()

    def command(self, name: str) -> CommandSpec | None:
        for spec in self.commands:
            if spec.name == name:
                return spec
        return None


def parse_manifest(text: str | bytes, path: str = "manifest.yaml") -> Manifest:
    document, raw_version = _load_yaml(text, path)
    return _Parser(path).manifest(document, raw_version)


def _load_yaml(text: str | bytes, path: str) -> tuple[object, str | None]:
    """Load one YAML document in the dialect of config files; also return `version` as written.

    `version: 1.10` is a float to YAML but a free string to us, so it is read from the node
    before resolution turns it into `1.1`. A repeated key keeps YAML's last-one-wins here, as
    manifests always have (plugins.md §2 is lenient about their shape).
    """
    try:
        document = parse_document(text, refuse_duplicate_keys=False)
    except YamlError as exc:
        raise ManifestError(f"invalid YAML: {exc} in {path}", path) from exc
    return document.value, scalar_as_written(document.root, "version")


def _kind(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case Mapping():
            return "object"
        case list() | tuple():
            return "list"
    return type(value).__name__


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path
        self.ignored: list[str] = []
        self.repeated: list[str] = []

    def fail(self, message: str) -> ManifestError:
        return ManifestError(message, self.path)

    def manifest(self, doc: object, raw_version: str | None) -> Manifest:
        if not isinstance(doc, dict):
            raise self.fail(f"manifest must be a YAML mapping (got {_kind(doc)})")
        self.ignored.extend(str(k) for k in doc if k not in _TOP_LEVEL_KEYS)

        spec = self.required(doc, "manifest_spec")
        if spec != MANIFEST_SPEC:
            raise self.fail(f"unsupported manifest_spec: {spec!r} (want {MANIFEST_SPEC!r})")
        manifest_version = self.required(doc, "manifest_version")
        if not _is_int(manifest_version, MANIFEST_VERSION):
            raise self.fail(f"unsupported manifest_version: {manifest_version}")

        name = self.required(doc, "name")
        if not isinstance(name, str) or not _PLUGIN_NAME.fullmatch(name):
            raise self.fail(f"name {name!r} is invalid (want ^[A-Za-z0-9][A-Za-z0-9_-]*$)")
        protocol = self.required(doc, "protocol")
        if not _is_int(protocol, PROTOCOL_VERSION):
            raise self.fail(f"unsupported protocol version: {protocol}")
        entrypoint = self.required(doc, "entrypoint")
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise self.fail("entrypoint must be a non-empty string")

        commands = self.commands(doc.get("commands"))
        return Manifest(
            name=name,
            version=self.version(doc.get("version"), raw_version),
            protocol=PROTOCOL_VERSION,
            entrypoint=entrypoint,
            description=_one_line(self.optional_str(doc.get("description"), "description")),
            concurrency_safe=self.optional_bool(doc.get("concurrency_safe"), "concurrency_safe", True),
            commands=commands,
            fact_outputs=self.fact_outputs(doc.get("fact_outputs"), {c.name for c in commands}),
            config_required=self.config_keys(doc.get("config_keys"), "required"),
            config_optional=self.config_keys(doc.get("config_keys"), "optional"),
            stopwatch_max_subs=self.stopwatch(doc.get("stopwatch")),
            ignored_keys=tuple(self.ignored),
            repeated_commands=tuple(self.repeated),
        )

    def required(self, doc: dict, key: str) -> Any:
        value = doc.get(key)
        if value is None:
            raise self.fail(f"{key} is required")
        return value

    def optional_str(self, value: object, where: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{where} must be a string (got {_kind(value)})")
        return value

    def optional_bool(self, value: object, where: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{where} must be a boolean (got {_kind(value)})")
        return value

    def version(self, value: object, raw: str | None) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool) and raw is not None:
            return raw
        raise self.fail(f"version must be a string (got {_kind(value)})")

    def commands(self, value: object) -> tuple[CommandSpec, ...]:
        if value is None:
            raise self.fail("commands is required")
        if not isinstance(value, list) or not value:
            raise self.fail("commands must be a non-empty list")
        specs: list[CommandSpec] = []
        seen: set[str] = set()
        for i, item in enumerate(value):
            spec = self.command(i, item)
            if spec.name in seen:
                # The reference's own plugin template repeats `poll`: such manifests keep loading,
                # with the first entry, and discovery warns (plugins.md §2).
                if spec.name not in self.repeated:
                    self.repeated.append(spec.name)
                continue
            seen.add(spec.name)
            specs.append(spec)
        return tuple(specs)

    def command(self, i: int, item: object) -> CommandSpec:
        if not isinstance(item, dict) or "name" not in item:
            raise self.fail(f"commands[{i}] must be object with name/type")
        self.ignored.extend(f"commands[{i}].{k}" for k in item if k not in _COMMAND_KEYS)
        name = item["name"]
        if not isinstance(name, str) or not _COMMAND_NAME.fullmatch(name):
            raise self.fail(f"commands[{i}].name {name!r} is invalid (want ^[A-Za-z][A-Za-z0-9_-]*$)")
        kind = item.get("type")
        if kind is None:
            kind = "write"
        if kind not in ("read", "write"):
            raise self.fail(f'commands[{i}].type must be "read" or "write" (got {kind!r})')
        where = f"commands[{i}]"
        self.values(item.get("values"), f"{where}.values")
        return CommandSpec(
            name=name,
            type=kind,
            description=self.optional_str(item.get("description"), f"{where}.description"),
            idempotent=self.hint(item.get("idempotent"), f"{where}.idempotent"),
            retry_safe=self.hint(item.get("retry_safe"), f"{where}.retry_safe"),
            input_schema=self.schema(item.get("input_schema"), f"{where}.input_schema"),
            output_schema=self.schema(item.get("output_schema"), f"{where}.output_schema"),
        )

    def hint(self, value: object, where: str) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        raise self.fail(f"{where} must be a boolean (got {_kind(value)})")

    def schema(self, value: object, where: str) -> dict | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(f"{where} must be an object (got {_kind(value)})")
        if "type" in value:
            return value
        properties: dict[str, object] = {}
        for field, field_type in value.items():
            match field_type:
                case str() | list():
                    properties[str(field)] = {"type": field_type}
                case dict():
                    properties[str(field)] = field_type
                case _:
                    raise self.fail(f"{where}.{field} must be a type name (got {_kind(field_type)})")
        return {"type": "object", "properties": properties}

    def values(self, value: object, where: str) -> None:
        """`values.consume` / `values.emit` are declarative only, but their form is a rule."""
        if value is None:
            return
        if not isinstance(value, dict):
            raise self.fail(f"{where} must be an object (got {_kind(value)})")
        self.value_paths(value.get("consume"), f"{where}.consume")
        emit = value.get("emit")
        if emit is None:
            return
        if not isinstance(emit, list):
            raise self.fail(f"{where}.emit must be a list (got {_kind(emit)})")
        for j, entry in enumerate(emit):
            if not isinstance(entry, dict):
                raise self.fail(f"{where}.emit[{j}] must be an object with event/values")
            event = entry.get("event")
            if not isinstance(event, str) or not event.strip():
                raise self.fail(f"{where}.emit[{j}].event must be a non-empty string")
            self.value_paths(entry.get("values"), f"{where}.emit[{j}].values")

    def value_paths(self, value: object, where: str) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise self.fail(f"{where} must be a list (got {_kind(value)})")
        for j, item in enumerate(value):
            if not isinstance(item, str) or not _VALUE_PATH.fullmatch(item):
                raise self.fail(f"{where}[{j}] must be payload.<seg>[.<seg>...] or payload.* (got {item!r})")

    def fact_outputs(self, value: object, commands: set[str]) -> tuple[FactOutput, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(f"fact_outputs must be a list (got {_kind(value)})")
        rules: list[FactOutput] = []
        for i, item in enumerate(value):
            where = f"fact_outputs[{i}]"
            if not isinstance(item, dict):
                raise self.fail(f"{where} must be an object with when/from/fact_type")
            when = item.get("when")
            command = when.get("command") if isinstance(when, dict) else None
            if not isinstance(command, str) or command not in commands:
                raise self.fail(f"{where}.when.command must name a declared command (got {command!r})")
            if item.get("from") != "state_updates":
                raise self.fail(f'{where}.from must be "state_updates" (got {item.get("from")!r})')
            fact_type = item.get("fact_type")
            if not isinstance(fact_type, str) or not fact_type.strip():
                raise self.fail(f"{where}.fact_type must be a non-empty string")
            view = item.get("compatibility_view")
            if view is None:
                view = ""
            if view not in ("", MIRROR_OBJECT):
                raise self.fail(
                    f'{where}.compatibility_view must be empty or "{MIRROR_OBJECT}" (got {view!r})'
                )
            rules.append(FactOutput(command=command, fact_type=fact_type, compatibility_view=view))
        return tuple(rules)

    def config_keys(self, value: object, group: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail(f"config_keys must be an object with required/optional (got {_kind(value)})")
        keys = value.get(group)
        if keys is None:
            return ()
        if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
            raise self.fail(f"config_keys.{group} must be a list of non-empty strings")
        return tuple(keys)

    def stopwatch(self, value: object) -> int:
        if value is None:
            return DEFAULT_STOPWATCH_MAX_SUBS
        if not isinstance(value, dict):
            raise self.fail(f"stopwatch must be an object (got {_kind(value)})")
        max_subs = value.get("max_subs")
        if max_subs is None or _is_int(max_subs, 0):
            return DEFAULT_STOPWATCH_MAX_SUBS
        if isinstance(max_subs, bool) or not isinstance(max_subs, int):
            raise self.fail(f"stopwatch.max_subs must be an integer (got {_kind(max_subs)})")
        if not 1 <= max_subs <= STOPWATCH_MAX_SUBS_LIMIT:
            raise self.fail(
                f"stopwatch.max_subs must be between 1 and {STOPWATCH_MAX_SUBS_LIMIT} (got {max_subs})"
            )
        return max_subs


def _is_int(value: object, expected: int) -> bool:
    # YAML `true` is a bool, and bool is an int subclass: `protocol: true` must not pass as 1.
    return isinstance(value, int) and not isinstance(value, bool) and value == expected


def _one_line(text: str) -> str:
    # A folded YAML scalar (`description: >`) ends in a newline; the description is one line.
    return " ".join(text.split())

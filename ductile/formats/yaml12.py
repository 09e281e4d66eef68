"""The one YAML dialect of Ductile: the 1.2 core schema, plus the line of every key.

PyYAML implements YAML 1.1, where ``on:`` is a boolean key, ``yes`` is true and ``at: 12:30`` is
the integer 750. Files written for Ductile expect YAML 1.2 (the Go implementation used it), so
the implicit types here are only those of the 1.2 core schema: ``true``/``false``, decimal,
``0o`` and ``0x`` integers, floats, ``null``/``~``. Dates stay strings.

Config files and plugin manifests are both read here (a shared leaf: it imports nothing of
Ductile), so a value means the same in either. Errors are ``YamlError`` with the 1-based line;
each reader turns it into its own error naming its file.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

KeyPath = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _CoreResolver(BaseResolver):
    yaml_implicit_resolvers: dict = {}


_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_CoreResolver.add_implicit_resolver(_MERGE_TAG, re.compile(r"^(?:<<)$"), ["<"])


class _CoreConstructor(SafeConstructor):
    def construct_core_int(self, node: ScalarNode) -> int:
        value = str(self.construct_scalar(node))
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value, 10)


_CoreConstructor.add_constructor("tag:yaml.org,2002:int", _CoreConstructor.construct_core_int)


class _PurePythonParsing(Reader, Scanner, Parser, Composer):
    def __init__(self, stream: str | bytes) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)


# libyaml parses about ten times faster; the resolver and constructor stay the Python ones above.
_Parsing: type = yaml.cyaml.CParser if yaml.__with_libyaml__ else _PurePythonParsing


class CoreLoader(_Parsing, _CoreConstructor, _CoreResolver):
    """A safe loader using the YAML 1.2 core schema."""

    def __init__(self, stream: str | bytes) -> None:
        _Parsing.__init__(self, stream)
        _CoreConstructor.__init__(self)
        _CoreResolver.__init__(self)


class YamlError(ValueError):
    """A document that is not one valid YAML document: ``problem`` at 1-based ``line`` (if known)."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        super().__init__(problem if line is None else f"{problem} (line {line})")
        self.problem = problem
        self.line = line


class DuplicateKey(YamlError):
    """A mapping that names one key twice (refused where the reader asks, e.g. config)."""


class YamlDocument(NamedTuple):
    value: Any
    root: Node | None  # the composed node tree, for a reader that needs a scalar as written
    lines: dict[KeyPath, int]  # the 1-based line of every key and list item ({} unless asked)


def parse_document(text: str | bytes, *, refuse_duplicate_keys: bool = True, key_lines: bool = False) -> YamlDocument:
    """Parse exactly one YAML document (empty text is ``None``).

    A syntax error, a second document, nesting too deep for the parser and (unless the reader
    keeps YAML's last-one-wins) a duplicate key are a ``YamlError``.
    """
    loader = CoreLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, None, {})
        if refuse_duplicate_keys:
            _reject_duplicate_keys(node)
        value = loader.construct_document(node)
        lines: dict[KeyPath, int] = {}
        if key_lines:
            lines[()] = node.start_mark.line + 1
            _collect_lines(loader, node, (), lines)
        return YamlDocument(value, node, lines)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlError(error.problem or error.context or "syntax error", line) from None
    except yaml.YAMLError as error:
        raise YamlError(str(error)) from None
    except RecursionError:
        # The composer and constructor recurse once per nesting level; a hostile document must be
        # refused like any other malformed one, not crash its reader.
        raise YamlError("nesting too deep") from None
    finally:
        loader.dispose()


def scalar_as_written(root: Node | None, key: str) -> str | None:
    """The text of top-level ``key``'s scalar before resolution (``1.10`` stays ``"1.10"``).

    ``None`` when the root is not a mapping, the key is absent, or its value is null or not a
    scalar. Of repeated keys the last wins, as in construction.
    """
    if not isinstance(root, MappingNode):
        return None
    raw: str | None = None
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            scalar = isinstance(value_node, ScalarNode) and value_node.tag != "tag:yaml.org,2002:null"
            raw = str(value_node.value) if scalar else None
    return raw


def scalar_value(text: str) -> Any:
    """The value a plain YAML scalar ``text`` would have: ``"8"`` → 8, ``"true"`` → True.

    Only ever a scalar: text that looks like YAML structure stays a string. The empty string
    stays a string rather than becoming null.
    """
    if text == "":
        return text
    loader = CoreLoader("")
    tag = loader.resolve(ScalarNode, text, (True, False))
    if tag in (_STR_TAG, _MERGE_TAG):
        return text
    try:
        return loader.construct_object(ScalarNode(tag, text), deep=True)
    except (yaml.YAMLError, ValueError):
        return text


def _reject_duplicate_keys(node: Node) -> None:
    if isinstance(node, MappingNode):
        seen: set[tuple[str, str]] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    raise DuplicateKey(f'duplicate key "{key_node.value}"', key_node.start_mark.line + 1)
                seen.add(identity)
            _reject_duplicate_keys(value_node)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item)


def _collect_lines(loader: CoreLoader, node: Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = key_node.value if key_node.tag == _STR_TAG else loader.construct_object(key_node, True)
            child = (*path, key)
            lines[child] = key_node.start_mark.line + 1
            _collect_lines(loader, value_node, child, lines)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _collect_lines(loader, item, child, lines)

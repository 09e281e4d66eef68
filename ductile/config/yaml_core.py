"""Config files in the one YAML dialect (``ductile.formats.yaml12``), with config's error shape."""

from __future__ import annotations

from typing import Any

from ductile.config.errors import ConfigError
from ductile.formats.yaml12 import DuplicateKey, KeyPath, YamlError, parse_document, scalar_value

__all__ = ["KeyPath", "parse_yaml", "scalar_value"]


def parse_yaml(text: str, file: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse one YAML document: the value and the 1-based line of every key and list item.

    A syntax error, a duplicate key or a second document is a ConfigError naming file and line.
    """
    try:
        document = parse_document(text, refuse_duplicate_keys=True, key_lines=True)
    except DuplicateKey as error:
        raise ConfigError(error.problem, file=file, line=error.line) from None
    except YamlError as error:
        raise ConfigError(f"invalid YAML: {error.problem}", file=file, line=error.line) from None
    return document.value, document.lines

"""``config schema`` and ``config validate`` (cli.md §2.3): the embedded JSON Schemas and a
structural check of one file against one of them. Neither reads a config dir. The schemas and the
check live in ductile/config/json_schema.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from ductile.cli.output import CliFailure, emit_json

VALID = "OK: {file} is a valid {name} document"
INVALID = "INVALID — {file}: {pointer}: {message}"


def schema(*, name: Annotated[str | None, Parameter(help="The schema to print (default: list the names).")] = None,
           json: bool = False) -> int:
    """The embedded schema names, or one schema as a JSON Schema (2020-12) document.

    **Examples:**

        ductile config schema
        ductile config schema --name config
    """
    from ductile.config.json_schema import SCHEMAS, UnknownSchema, json_schema

    if name is None:
        if json:
            emit_json({"schemas": list(SCHEMAS)})
        else:
            print("\n".join(SCHEMAS))
        return 0
    try:
        emit_json(json_schema(name))
    except UnknownSchema as exc:
        raise CliFailure(str(exc)) from None
    return 0


def validate(*, file: Annotated[str | None, Parameter(help="The file to check.")] = None,
             name: Annotated[str, Parameter(help="The schema to check it against.")] = "config",
             whole: Annotated[bool, Parameter(help="FILE is a root config.yaml: check it merged with its "
                                                   "plaintext includes.")] = False,
             json: bool = False) -> int:
    """A structural check against a schema: no decryption, no key, no cross-references.

    **Examples:**

        ductile config validate --file ./my-gateway/config.yaml
        ductile config validate --file plugins.yaml --name config --json
    """
    from ductile.config.errors import ConfigError
    from ductile.config.json_schema import UnknownSchema, check_document, check_file, whole_document

    if file is None:
        raise CliFailure("config validate: --file is required")
    path = Path(file)
    if not path.is_file():
        raise CliFailure(f"config validate: {file}: no such file")
    try:
        if whole:
            merged = whole_document(path)
            for skipped in merged.skipped:
                print(f"SKIPPED (encrypted): {skipped}", file=sys.stderr if json else sys.stdout)
            findings = check_document(name, merged.data)
        else:
            findings = check_file(name, path)
    except UnknownSchema as exc:
        raise CliFailure(str(exc)) from None
    except (ConfigError, OSError) as exc:
        raise CliFailure(f"config validate: {exc}") from None
    if json:
        emit_json({"valid": not findings, "file": file, "schema": name,
                   "errors": [{"pointer": f.pointer, "message": f.message} for f in findings]})
    elif findings:
        for finding in findings:
            print(INVALID.format(file=file, pointer=finding.pointer, message=finding.message))
    else:
        print(VALID.format(file=file, name=name))
    return 1 if findings else 0

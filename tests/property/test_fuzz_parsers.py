"""Fuzzing: every parser of untrusted input fails only with its own typed error, with a message.

- the config loader (random YAML documents as config.yaml, random mutations of a valid config
  dir, raw bytes) → ``ConfigError``;
- the manifest parser (random YAML, mutations of a valid manifest, raw bytes) → ``ManifestError``;
- the pipeline DSL compiler (random and mutated ``pipelines:`` lists) → a ``Compiled`` with errors,
  never an exception;
- the protocol-2 response parser: ``decode_response`` → ``ProtocolError``, ``validate_ok`` →
  ``ResponseRejected``, ``event_for_handle`` → ``InvalidEvent``, and the runtime's ``classify``
  never raises on any stdout;
- the ``if:``/``with:`` evaluators: compiling any value → ``ConditionError`` / ``TemplateError``,
  evaluating a compiled one on any scope → ``ConditionEvalError`` / ``TemplateEvalError``.

A crash found here is fixed in the owning module and kept as an ``@example`` on its test (none so far:
600 examples per parser, 200 per config test, found none).
``max_examples`` is bounded so the module stays within a few seconds.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductile.config.discovery import ConfigSource
from ductile.config.errors import ConfigError
from ductile.config.loader import load_config
from ductile.pipelines.compiler import compile_pipelines
from ductile.pipelines.conditions import ConditionError, ConditionEvalError, compile_condition
from ductile.pipelines.templates import TemplateError, TemplateEvalError, compile_with
from ductile.plugins.manifest import ManifestError, parse_manifest
from ductile.plugins.protocol import (
    InvalidEvent,
    ProtocolError,
    ResponseRejected,
    decode_response,
    event_for_handle,
    validate_ok,
)
from ductile.runtime.attempt import classify
from ductile.runtime.process import ProcessResult

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

# --- values -----------------------------------------------------------------------------------------

keys = st.sampled_from(["name", "on", "steps", "uses", "if", "with", "path", "op", "value", "type", "commands",
                        "enabled", "plugins", "api", "service", "include", "payload", "all", "any", "not"]) | st.text(
    max_size=6)
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["${X}", "{{ payload.a }}", "payload.a", "context.x", "*", "", "../..", "read", "write",
                              "shellok", "1h", "-1s", "eq", "exists", "in", "regex", "\x00", "\ud7ff"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=25)
yaml_texts = st.builds(lambda v: yaml.safe_dump(v, allow_unicode=True), values) | st.text(max_size=200)
raw_bytes = st.binary(max_size=200)


def mutate(doc: Any, data: st.DataObject) -> Any:
    """A copy of ``doc`` with a few random edits: a value replaced, a key dropped, a key added."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        node, key = _pick(doc, data)
        if node is None:
            return data.draw(values, label="root")
        action = data.draw(st.sampled_from(["replace", "drop", "add"]), label="action")
        if action == "replace":
            node[key] = data.draw(values, label="value")
        elif action == "drop" and isinstance(node, dict):
            del node[key]
        elif isinstance(node, dict):
            node[data.draw(keys, label="key")] = data.draw(values, label="value")
        else:
            node.insert(key, data.draw(values, label="item"))
    return doc


def _pick(doc: Any, data: st.DataObject) -> tuple[Any, Any]:
    """A random (container, key) inside ``doc``, by walking down a random number of levels."""
    node: Any = None
    key: Any = None
    here = doc
    while isinstance(here, (dict, list)) and here:
        node = here
        key = data.draw(st.sampled_from(sorted(here, key=repr) if isinstance(here, dict) else range(len(here))))
        if data.draw(st.booleans(), label="stop"):
            break
        here = here[key]
    return node, key


def fails_typed(call: Callable[[], Any], *errors: type[Exception]) -> None:
    """``call`` succeeds, or raises one of ``errors`` with a message; anything else fails the test."""
    try:
        call()
    except errors as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"


# --- the config loader ------------------------------------------------------------------------------

VALID_CONFIG: dict[str, Any] = {
    "service": {"max_workers": 2, "shutdown_grace": "5s"},
    "state": {"path": "data/ductile.db"},
    "plugin_roots": [str(PLUGINS)],
    "api": {"enabled": True, "listen": "127.0.0.1:8080", "auth": {"tokens": [{"token": "t" * 32, "scopes": ["*"]}]}},
    "plugins": {"shellok": {"enabled": True, "retry": {"max_attempts": 2}}},
    "pipelines": [{"name": "p", "on": "x.y", "steps": [{"uses": "shellok", "if": {"path": "payload.a", "op": "exists"}},
                                                        {"uses": "shellok", "with": {"k": "{{ payload.a }}"}}]}],
}


def load(files: dict[str, str | bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, text in files.items():
            (d / name).write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        source = ConfigSource(root_file=d / "config.yaml", config_dir=d, source="explicit")
        fails_typed(lambda: load_config(source, {"HOME": str(d / "home")}), ConfigError)


def test_the_valid_config_loads() -> None:
    """The mutations start from a config that loads, so each one probes one step off the happy path."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "config.yaml").write_text(yaml.safe_dump(VALID_CONFIG))
        load_config(ConfigSource(root_file=d / "config.yaml", config_dir=d, source="explicit"), {"HOME": tmp})


@FILES
@given(yaml_texts | raw_bytes)
def test_config_loader_refuses_any_document_with_a_config_error(text: str | bytes) -> None:
    load({"config.yaml": text})


@FILES
@given(st.data())
def test_config_loader_refuses_any_mutated_config_with_a_config_error(data: st.DataObject) -> None:
    config = mutate(VALID_CONFIG, data)
    if data.draw(st.booleans(), label="split"):  # half of it in an included file
        included = {k: config.pop(k) for k in ("plugins", "pipelines") if isinstance(config, dict) and k in config}
        if isinstance(config, dict):
            config["include"] = ["more.yaml"]
        load({"config.yaml": yaml.safe_dump(config, allow_unicode=True),
              "more.yaml": yaml.safe_dump(included, allow_unicode=True)})
    else:
        load({"config.yaml": yaml.safe_dump(config, allow_unicode=True)})


# --- the manifest parser ----------------------------------------------------------------------------

VALID_MANIFEST: dict[str, Any] = {
    "manifest_spec": "ductile.plugin", "manifest_version": 1, "name": "fuzzed", "version": "1.0", "protocol": 2,
    "entrypoint": "run.sh", "description": "d", "concurrency_safe": True,
    "commands": [
        {"name": "poll", "type": "read", "values": {"emit": [{"event": "a.b", "values": ["payload.id"]}]}},
        {"name": "handle", "type": "write", "idempotent": True, "input_schema": {"id": "string"}},
    ],
    "fact_outputs": [{"when": {"command": "poll"}, "from": "state_updates", "fact_type": "seen"}],
    "config_keys": {"required": ["k"], "optional": []},
    "stopwatch": {"max_subs": 4},
}


def test_the_valid_manifest_parses() -> None:
    assert parse_manifest(yaml.safe_dump(VALID_MANIFEST)).name == "fuzzed"


@FUZZ
@given(yaml_texts | raw_bytes)
def test_manifest_parser_refuses_any_document_with_a_manifest_error(text: str | bytes) -> None:
    fails_typed(lambda: parse_manifest(text), ManifestError)


@FUZZ
@given(st.data())
def test_manifest_parser_refuses_any_mutated_manifest_with_a_manifest_error(data: st.DataObject) -> None:
    text = yaml.safe_dump(mutate(VALID_MANIFEST, data), allow_unicode=True)
    fails_typed(lambda: parse_manifest(text), ManifestError)


# --- the pipeline DSL compiler ----------------------------------------------------------------------

def compiles(raw: Any) -> None:
    out = compile_pipelines(raw, enabled={"shellok", "behave"}, configured={"shellok", "behave", "off"},
                            configured_enabled={"shellok", "behave"}, relay_instances=("peer",))
    assert all(isinstance(e, str) and e.strip() for e in out.errors)


@FUZZ
@given(st.lists(values, max_size=4))
def test_pipeline_compiler_reports_any_list_as_errors_never_raises(raw: list[Any]) -> None:
    compiles(raw)


@FUZZ
@given(st.data())
def test_pipeline_compiler_reports_any_mutated_pipeline_as_errors_never_raises(data: st.DataObject) -> None:
    pipelines = [
        {"name": "p", "on": "x.y", "steps": [
            {"id": "first", "uses": "shellok", "if": {"all": [{"path": "payload.a", "op": "eq", "value": 1}]}},
            {"uses": "behave.handle", "with": {"k": "{{ payload.a }}", "n": ["{{ context.x }}"]}},
            {"split": [{"uses": "shellok"}, {"steps": [{"call": "q"}]}]},
        ]},
        {"name": "q", "on": "z", "steps": [{"uses": "shellok"}, {"relay": {"to": "peer"}}]},
    ]
    raw = mutate(pipelines, data)
    compiles(raw if isinstance(raw, list) else [raw])


# --- the protocol-2 response parser -----------------------------------------------------------------

MANIFEST = parse_manifest(yaml.safe_dump(VALID_MANIFEST))
responses = (
    raw_bytes
    | st.builds(lambda v: yaml.safe_dump(v).encode(), values)
    | st.builds(lambda status, rest: __import__("json").dumps({"status": status, **rest}, allow_nan=True).encode(),
                st.sampled_from(["ok", "error", "OK", 1]),
                st.dictionaries(st.sampled_from(["result", "error", "retry", "events", "state_updates", "logs",
                                                 "subs", "stopwatch"]) | keys, values, max_size=5))
)


@FUZZ
@given(responses)
def test_protocol_parser_refuses_any_stdout_with_its_own_errors(stdout: bytes) -> None:
    try:
        response = decode_response(stdout)
    except ProtocolError as exc:
        assert str(exc).strip()
        return
    if response.status == "ok":
        fails_typed(lambda: validate_ok(response, source="fuzzed", now_rfc3339="2026-01-01T00:00:00Z",
                                        new_id=lambda: "id"), ResponseRejected)


@FUZZ
@given(responses, st.integers(min_value=-1, max_value=255) | st.none())
def test_classify_turns_any_stdout_into_an_attempt_result(stdout: bytes, exit_code: int | None) -> None:
    proc = ProcessResult(stdout=stdout, stderr="", exit_code=exit_code, duration_ms=1)
    out = classify(proc, plugin="fuzzed", command="poll", manifest=MANIFEST, timeout=1.0,
                   now_rfc3339="2026-01-01T00:00:00Z")
    assert out.result.outcome


@FUZZ
@given(values, values)
def test_a_stored_handle_payload_is_an_event_or_an_invalid_event(stored: Any, context: Any) -> None:
    fails_typed(lambda: event_for_handle(stored, "2026-01-01T00:00:00Z", context if isinstance(context, dict) else {}),
                InvalidEvent)


# --- the if: / with: evaluators ---------------------------------------------------------------------

scopes = st.fixed_dictionaries({}, optional={"payload": values, "context": values, "config": values})
conditions = values | st.builds(lambda p, op, v: {"path": p, "op": op, "value": v},
                                st.sampled_from(["payload.a", "context.x.0", "config.b", "payload", "nope.a"]),
                                st.sampled_from(["eq", "neq", "in", "exists", "gt", "lt", "gte", "lte", "contains",
                                                 "startswith", "regex", "bogus"]), values)


@FUZZ
@given(conditions | st.lists(conditions, max_size=3).map(lambda c: {"any": c}), scopes)
def test_an_if_condition_compiles_and_evaluates_or_fails_typed(raw: Any, scope: dict[str, Any]) -> None:
    try:
        condition = compile_condition(raw)
    except ConditionError as exc:
        assert str(exc).strip()
        return
    fails_typed(lambda: condition.evaluate(scope), ConditionEvalError)


templates = values | st.text(alphabet="{}. payloadcontex\\$0", max_size=24)


@FUZZ
@given(st.dictionaries(keys | st.integers(), templates, max_size=4) | values, scopes)
def test_a_with_map_compiles_and_applies_or_fails_typed(raw: Any, scope: dict[str, Any]) -> None:
    try:
        spec = compile_with(raw)
    except TemplateError as exc:
        assert str(exc).strip()
        return
    fails_typed(lambda: spec.apply({}, scope), TemplateEvalError)


"""The import graph has no upward edge (ARCHITECTURE.md §2).

Walks every module under ``ductile/`` with ``ast`` and checks each import of a Ductile module
against §2's table. Imports under ``if TYPE_CHECKING:`` are annotations and do not count; imports
inside functions (lazy ones) do count, except the two the table names: the CLI may import the TUI
inside ``system watch`` and the composition root inside ``system start``.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec
import pytest

import ductile

ROOT = Path(ductile.__file__).parent

# The top-level names under ductile/ that §2's table names, and their layers. A name it leaves
# open (a new shared leaf such as a status or YAML module) is placed by what it imports: see
# place().
LAYER_OF: dict[str, str] = {
    "events": "events",
    "plugins": "leaf",
    "pipelines": "leaf",
    "config": "leaf",
    "vault": "leaf",
    "__init__": "leaf",  # ``ductile.__version__``: imports nothing
    "projections": "projections",
    "commands": "commands",
    "system": "system",
    "app": "app",
    "runtime": "runtime",
    "api": "api",
    "cli": "cli",
    "tui": "tui",
    "daemon": "root",
}

_BELOW_APP = {"events", "leaf", "projections", "commands", "system"}
MAY_IMPORT: dict[str, set[str]] = {
    "events": {"events"},  # and a shared leaf that imports nothing of Ductile: see _pure_leaves
    "leaf": {"events", "leaf"},
    "projections": {"events", "leaf", "projections"},
    "commands": {"events", "leaf", "projections", "commands"},
    "system": {"events", "leaf", "projections", "commands", "system"},
    "app": _BELOW_APP | {"app"},
    "runtime": _BELOW_APP | {"app", "runtime"},
    "api": _BELOW_APP | {"app", "runtime", "api"},
    "cli": _BELOW_APP | {"app", "runtime", "cli"},
    "tui": {"events", "leaf", "tui"},
    "root": set(LAYER_OF.values()),
}

# (importing module, function it is imported in, imported module prefix): the table's named lazy
# imports. Anywhere else, these edges are upward.
LAZY_EXCEPTIONS: set[tuple[str, str, str]] = {
    ("ductile.cli.system", "start", "ductile.daemon"),
    ("ductile.cli.system", "watch", "ductile.tui"),
}

class Edge(msgspec.Struct, frozen=True):
    importer: str  # dotted module name
    imported: str  # dotted module name, as written (``from ductile.x import y`` gives ductile.x)
    function: str | None  # the enclosing function of a lazy import, None at module level
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def edges_of(path: Path) -> Iterator[Edge]:
    return edges_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def edges_in(source: str, importer: str, *, is_package: bool = False) -> Iterator[Edge]:

    def walk(node: ast.AST, function: str | None) -> Iterator[Edge]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:  # the else branch runs
                    yield from walk(stmt, function)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Edge(importer, alias.name, function, child.lineno)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(importer, is_package, child)
                if target == "ductile":  # ``from ductile import x`` may name a submodule
                    for alias in child.names:
                        yield Edge(importer, f"ductile.{alias.name}", function, child.lineno)
                else:
                    yield Edge(importer, target, function, child.lineno)
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            yield from walk(child, function if function is not None else inner)

    for edge in walk(ast.parse(source, importer), None):
        if edge.imported == "ductile" or edge.imported.startswith("ductile."):
            yield edge


@functools.cache
def all_edges() -> tuple[Edge, ...]:
    return tuple(e for path in sorted(ROOT.rglob("*.py")) for e in edges_of(path))


def top_of(module: str) -> str:
    """The top-level package or module under ``ductile/`` that ``module`` belongs to."""
    parts = module.split(".")
    if len(parts) > 1 and not parts[1].startswith("__"):
        return parts[1]
    return "__init__"  # ``ductile`` itself, or ``from ductile import __version__``


def place(top: str, edges: Iterable[Edge], seen: frozenset[str] = frozenset()) -> str:
    """§2's rule for a name the table leaves open: one that imports runtime, api, cli or tui is the
    composition root; else one that imports projections, commands or the application layer is part
    of the application layer; else it is a shared leaf."""
    if top in LAYER_OF:
        return LAYER_OF[top]
    edges = tuple(edges)
    imported = {top_of(e.imported) for e in edges if top_of(e.importer) == top} - {top} - seen
    layers = {place(t, edges, seen | {top}) for t in imported}
    if layers & {"runtime", "api", "cli", "tui", "root"}:
        return "root"
    if layers & {"projections", "commands", "app"}:
        return "app"
    return "leaf"


def layer_of(module: str) -> str:
    return place(top_of(module), all_edges())


def _pure_leaves(edges: Iterable[Edge]) -> set[str]:
    """Leaf modules that import nothing of Ductile: the only ones ``events`` may import."""
    importing = {e.importer for e in edges}
    return {module_name(p) for p in ROOT.rglob("*.py")
            if layer_of(module_name(p)) == "leaf" and module_name(p) not in importing}


def upward_edges(edges: Iterable[Edge]) -> list[Edge]:
    pure = _pure_leaves(edges)
    bad = []
    for e in edges:
        src, dst = layer_of(e.importer), layer_of(e.imported)
        if dst in MAY_IMPORT[src]:
            continue
        if src == "events" and dst == "leaf" and e.imported in pure:
            continue
        if e.function is not None and any(
            e.importer == mod and e.function == fn and (e.imported == prefix or e.imported.startswith(prefix + "."))
            for mod, fn, prefix in LAZY_EXCEPTIONS
        ):
            continue
        bad.append(e)
    return bad


def _describe(e: Edge) -> str:
    where = f" (lazily, in {e.function})" if e.function else ""
    return f"{e.importer}:{e.line} imports {e.imported}{where}: {layer_of(e.importer)} -> {layer_of(e.imported)}"


def test_no_module_imports_a_higher_layer() -> None:
    bad = upward_edges(all_edges())
    assert not bad, "upward imports (ARCHITECTURE §2):\n" + "\n".join(map(_describe, bad))


def test_api_and_cli_never_import_each_other() -> None:
    crossing = [e for e in all_edges() if {layer_of(e.importer), layer_of(e.imported)} == {"api", "cli"}]
    assert not crossing, "\n".join(map(_describe, crossing))


def test_leaf_packages_import_each_other_without_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for e in all_edges():
        a, b = e.importer.split(".")[:2], e.imported.split(".")[:2]
        if layer_of(e.importer) == layer_of(e.imported) == "leaf" and a != b:
            graph.setdefault(".".join(a), set()).add(".".join(b))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cyclic = sorted(p for p in graph if reaches(p, p, set()))
    assert not cyclic, f"leaf packages in an import cycle: {cyclic}"


def test_a_name_the_table_leaves_open_is_placed_by_what_it_imports() -> None:
    def edge(importer: str, imported: str) -> Edge:
        return Edge(importer, imported, None, 1)

    assert place("json_limits", all_edges()) == "leaf"
    assert place("statuses", [edge("ductile.statuses", "ductile.events.types")]) == "leaf"
    assert place("usecases", [edge("ductile.usecases.jobs", "ductile.projections.queue")]) == "app"
    assert place("server", [edge("ductile.server", "ductile.api.app")]) == "root"


def test_the_walker_sees_lazy_imports_and_skips_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ductile.events import log\n"
        "if TYPE_CHECKING:\n    from ductile.api import app\n"
        "def f():\n    import ductile.runtime.dispatcher\n"
        "    def g():\n        from . import sibling\n"
    )
    found = {(e.imported, e.function) for e in edges_in(source, "ductile.events.probe")}
    assert found == {("ductile.events", None), ("ductile.runtime.dispatcher", "f"), ("ductile.events", "f")}


@pytest.mark.parametrize("argv", [["version"], ["version", "--json"]])
def test_version_does_not_import_the_web_stack(argv: list[str]) -> None:
    # A fresh interpreter: this test process has long since imported litestar.
    probe = (
        "import sys\n"
        f"sys.argv = ['ductile', *{argv!r}]\n"
        "from ductile.cli.main import run\n"
        "try:\n    run()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        # rich too: it draws tables and progress bars on a terminal only, so it is imported there.
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'litestar', 'uvicorn', 'httpx', 'aiosqlite', 'rich'})\n"
        "print('HEAVY', ','.join(heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True, env=env)
    heavy = done.stdout.rsplit("HEAVY", 1)[1].strip()
    assert heavy == "", f"ductile {' '.join(argv)} imported {heavy}"


# What a pure decider never touches (ARCHITECTURE §2): SQL, ids, the clock, threads, the writer.
IMPURE = {"sqlite3", "aiosqlite", "psycopg", "uuid", "time", "random", "secrets", "asyncio", "threading", "subprocess",
          "ductile.events.log", "litestar", "httpx"}


def test_deciders_import_no_sql_ids_clock_or_writer() -> None:
    found = []
    for path in sorted((ROOT / "commands").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{module_name(path)}:{node.lineno} imports {n}" for n in names
                      if n in IMPURE or n.split(".")[0] in IMPURE]
    assert not found, "deciders must stay pure (use cases belong in ductile/app/):\n" + "\n".join(found)


def test_deciders_take_only_record_structs_from_projections() -> None:
    # A decider's state may be a record Struct a projection's reader returned, passed in by the
    # use case; a reader, a cursor or SQL would make it impure (ARCHITECTURE §2).
    import importlib

    wrong = []
    for path in sorted((ROOT / "commands").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import) and any(a.name.startswith("ductile.projections") for a in node.names):
                wrong.append(f"{module_name(path)}:{node.lineno} imports a projection module whole")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ductile.projections"):
                source = importlib.import_module(node.module or "")
                for alias in node.names:
                    value = getattr(source, alias.name, None)
                    if not (isinstance(value, type) and issubclass(value, msgspec.Struct)):
                        wrong.append(f"{module_name(path)}:{node.lineno} imports {node.module}.{alias.name}")
    assert not wrong, "commands/ may take only record Structs from projections:\n" + "\n".join(wrong)

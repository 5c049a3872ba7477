"""The package's layering, read from the source: no import cycles, and the core below the edges.

Every module of ``edge/`` is parsed (never imported) and its imports resolved to modules
of the package. Two rules:

* no cycles among modules as they import at load time (imports inside functions, which
  run later, and ``if TYPE_CHECKING:`` blocks, which never run, do not count);
* the protocol-neutral core (the ``Call``, the pipeline, descriptors, routing,
  transcoding, and the upstream settings as values) never imports the edges: the upstream
  clients, observability, the ingress adapters or the app, anywhere in the module, so the
  core can be tested, reused and reasoned about without them. The edges depend on the
  core, never the other way round.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import edge

ROOT = Path(edge.__file__).parent

CORE = ("edge.call", "edge.upstream_settings", "edge.pipeline", "edge.descriptors")
CORE += ("edge.routing", "edge.transcode")
EDGES = ("edge.upstream", "edge.observability", "edge.ingress", "edge.app")

# (importer, imported): known exceptions, each with the reason it is still here.
ALLOWED: set[tuple[str, str]] = set()
# modules left out of the cycle check, each with the cycle it is part of (none today)
CYCLE_EXCLUDED: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _within(name: str, packages: tuple[str, ...]) -> bool:
    """Whether ``name`` is one of ``packages`` or inside one (by dotted parts, not text)."""
    return any(name == package or name.startswith(package + ".") for package in packages)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    body: list[ast.stmt], *, load_time: bool
) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of ``body``; ``load_time``: only those run when it loads."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            if not load_time:
                yield from _import_nodes(node.body, load_time=load_time)
            yield from _import_nodes(node.orelse, load_time=load_time)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and load_time:
            continue  # runs when called, not when the module loads
        else:  # if, try, with, for, while, match, class bodies: run as the module loads
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _import_nodes([child], load_time=load_time)
                elif isinstance(child, ast.excepthandler | ast.match_case):
                    yield from _import_nodes(child.body, load_time=load_time)


def _resolve(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package's modules whose contents an import statement needs.

    ``import a.b`` needs ``a.b``; ``from a import b`` needs the module ``a.b`` if there is
    one, else ``a`` (a name defined in it). Parent packages are not counted: a submodule
    may load while its package's ``__init__`` is still running, which is no cycle.
    """
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    base = node.module or ""
    if node.level:  # relative: from the importer's package, up level - 1 more
        parts = importer.split(".") if is_package else importer.split(".")[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    needed = set()
    for alias in node.names:
        name = f"{base}.{alias.name}"
        if name in MODULES:
            needed.add(name)
        elif base in MODULES:
            needed.add(base)
    return needed


def _imports_in(name: str, source: str, *, is_package: bool, load_time: bool) -> set[str]:
    found: set[str] = set()
    for node in _import_nodes(ast.parse(source).body, load_time=load_time):
        found |= _resolve(name, is_package, node)
    found.discard(name)
    return found


def _imports(name: str, *, load_time: bool) -> set[str]:
    path = MODULES[name]
    return _imports_in(
        name, path.read_text(), is_package=path.name == "__init__.py", load_time=load_time
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One import path round a component, for the failure message."""
    members = set(component)
    path = [component[0]]
    while True:
        step = min(graph[path[-1]] & members)
        if step in path:
            return [*path[path.index(step) :], step]
        path.append(step)


def test_the_scan_sees_the_package() -> None:
    assert {"edge.call", "edge.app", "edge.pipeline.build", "edge.upstream.grpc"} <= set(MODULES)
    assert "edge.call" in _imports("edge.pipeline.chain", load_time=True)


SAMPLE = """
from __future__ import annotations
import json
from typing import TYPE_CHECKING
from edge.upstream import lean
from . import chain
from ..routing.table import RouteTable
try:
    from edge.errors import EdgeError
except ImportError:
    import edge.clock
if TYPE_CHECKING:
    from edge.app import create_app
else:
    from edge.config import Config
class Layer:
    from edge.units import parse_size
def later() -> None:
    import edge.observability.metrics
"""


def test_the_scan_reads_every_form_of_import() -> None:
    loaded = {"edge.upstream.lean", "edge.pipeline.chain", "edge.routing.table", "edge.errors"}
    loaded |= {"edge.config", "edge.units"}
    at_load = _imports_in("edge.pipeline.x", SAMPLE, is_package=False, load_time=True)
    assert at_load == loaded
    anywhere = _imports_in("edge.pipeline.x", SAMPLE, is_package=False, load_time=False)
    assert anywhere == loaded | {"edge.app", "edge.observability.metrics"}
    package = _imports_in("edge.pipeline", "from . import chain", is_package=True, load_time=True)
    assert package == {"edge.pipeline.chain"}
    named = _imports_in("edge.x", "from edge.call import Call", is_package=False, load_time=True)
    assert named == {"edge.call"}


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _a_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph = {
        name: _imports(name, load_time=True) - CYCLE_EXCLUDED
        for name in MODULES
        if name not in CYCLE_EXCLUDED
    }
    cycles = [" -> ".join(_a_cycle(graph, component)) for component in _cycles(graph)]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _within(n, CORE)))
def test_the_core_never_imports_the_edges(name: str) -> None:
    wrong = {
        imported
        for imported in _imports(name, load_time=False)
        if _within(imported, EDGES) and (name, imported) not in ALLOWED
    }
    assert not wrong, f"{name} imports {sorted(wrong)}"


def test_every_allowed_exception_is_still_needed() -> None:
    for importer, imported in ALLOWED:
        assert imported in _imports(importer, load_time=False), (importer, imported)

"""The layers of DESIGN.md, kept honest: import cycles and forbidden imports.

Every module of the ``wsmux`` package is parsed (not imported) with ``ast``;
every import counts, those under ``if TYPE_CHECKING:`` and inside functions
included, because a lazy or type-only import is still a dependency that the
layering forbids. ``from .x import y`` is an edge to module ``.x`` (or to the
submodule ``.x.y`` when there is one); ``from . import x`` is an edge to the
submodule ``x``. Importing a submodule does not count as importing its
parent packages' ``__init__``, so a package ``__init__`` that imports its own
submodules, and submodules that import each other, are fine.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

import wsmux

ROOT = Path(wsmux.__file__).resolve().parent

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module``'s source imports, anywhere in it."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        # The longest known prefix: "wsmux.fanout._hub.Hub" -> "wsmux.fanout._hub".
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                add(sub if sub in known else target)
    found.discard(module)
    return found


def import_graph(root: Path) -> Graph:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {
        name: imports_of(path.read_text(), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def cycles(graph: Graph) -> list[list[str]]:
    """One concrete cycle through each strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    # The shortest cycle through each module of a component, each cycle once.
    found: list[list[str]] = []
    for component in sorted(components, key=min):
        seen: set[frozenset[tuple[str, str]]] = set()
        for start in sorted(component):
            cycle = shortest_cycle(graph, component, start)
            key = frozenset(itertools.pairwise(cycle))
            if key not in seen:
                seen.add(key)
                found.append(cycle)
    return found


def shortest_cycle(graph: Graph, component: set[str], start: str) -> list[str]:
    """A shortest cycle inside a component, from ``start`` back to it."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle in {component}")  # unreachable for a real component


def edges(graph: Graph) -> Iterator[tuple[str, str]]:
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            yield src, dst


def under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.fixture(scope="module")
def graph() -> Graph:
    found = import_graph(ROOT)
    # The walk saw the package: every layer, and the edges the design relies on.
    assert {"wsmux", "wsmux._mux", "wsmux.fanout._hub", "wsmux.connection._supervisor"} <= set(
        found
    )
    assert "wsmux.fanout._match" in found["wsmux.fanout._hub"]
    return found


def test_no_import_cycles(graph: Graph) -> None:
    found = cycles(graph)
    assert not found, "import cycles between wsmux modules:\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in found
    )


def test_fanout_imports_nothing_from_connection(graph: Graph) -> None:
    bad = [
        f"{src} -> {dst}"
        for src, dst in edges(graph)
        if under(src, "wsmux.fanout") and under(dst, "wsmux.connection")
    ]
    assert not bad, "the fan-out layer imports the connection layer:\n  " + "\n  ".join(bad)


def test_nothing_in_the_core_imports_the_tools(graph: Graph) -> None:
    tools = ("wsmux.cli", "wsmux.bench", "wsmux.testing", "wsmux.metrics")
    bad = [
        f"{src} -> {dst}"
        for src, dst in edges(graph)
        if under(dst, *tools)
        and not under(src, *tools)
        and not (src == "wsmux.__main__" and under(dst, "wsmux.cli", "wsmux.bench"))
    ]
    assert not bad, "core modules import the tools:\n  " + "\n  ".join(bad)


def test_the_pool_sits_above_connection_and_fanout(graph: Graph) -> None:
    """wsmux.pool composes Multiplexers; nothing below it (the connection and
    fan-out layers, the Multiplexer front) imports it, and it imports no tool."""
    assert "wsmux.pool._pool" in graph and "wsmux._mux" in graph["wsmux.pool._members"]
    below = (
        "wsmux.connection",
        "wsmux.fanout",
        "wsmux._mux",
        "wsmux._lifecycle",
        "wsmux._outbound",
    )
    bad = [
        f"{src} -> {dst}"
        for src, dst in edges(graph)
        if (under(src, *below) and under(dst, "wsmux.pool"))
        or (under(src, "wsmux.pool") and under(dst, "wsmux.threads", "wsmux.nats"))
    ]
    assert not bad, "layer violations around the pool:\n  " + "\n  ".join(bad)


def test_nats_sits_above_the_core(graph: Graph) -> None:
    """wsmux.nats builds on the fan-out layer and the front object; the core
    never imports it (only the package's public names and the tools do), and
    it reaches no connection, thread or tool module directly."""
    allowed_users = ("wsmux", "wsmux.nats", "wsmux.cli", "wsmux.bench", "wsmux.__main__")
    bad = [
        f"{src} -> {dst}"
        for src, dst in edges(graph)
        if under(dst, "wsmux.nats") and not (src == "wsmux" or under(src, *allowed_users[1:]))
    ]
    bad += [
        f"{src} -> {dst}"
        for src, dst in edges(graph)
        if under(src, "wsmux.nats")
        and under(
            dst,
            "wsmux.connection",
            "wsmux.threads",
            "wsmux.testing",
            "wsmux.cli",
            "wsmux.bench",
            "wsmux.compat",
            "wsmux.book",
        )
    ]
    assert not bad, "wsmux.nats is out of its layer:\n  " + "\n  ".join(bad)


# -- the checker itself, on a package made for it --------------------------------------


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import A\nfrom . import sub\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
        "b.py": "def f():\n    from .sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "import pkg.a\nfrom .. import d\n",
        "d.py": "x = 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    g = import_graph(pkg)
    assert g == {
        "pkg": {"pkg.a", "pkg.sub"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a", "pkg.d"},
        "pkg.d": set(),
    }
    assert cycles(g) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]

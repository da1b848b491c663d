"""The layout keeps its promises: no import cycles, and the engine never imports a concrete forge.

Imports are read from the source (every ``import`` and ``from ... import``, module-level and
inside functions, except ``if TYPE_CHECKING:`` blocks, which never run), so a lazy import
that closes a cycle is caught as surely as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
CONCRETE_FORGES = ("lockstep.forges.git", "lockstep.forges.github")
# the run itself: it reaches a forge only through lockstep.forges (the registry) and its protocols
ENGINE = ("lockstep.engine.gate", "lockstep.engine.reconcile", "lockstep.records", "lockstep.engine.run", "lockstep.engine.prepare",
          "lockstep.engine.session", "lockstep.engine.publish", "lockstep.plan",
          "lockstep.probes", "lockstep.checks", "lockstep.report", "lockstep.model")


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> set[str]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            named.add(base)
            named.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for n in named if (m := _known(n)) and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_there_are_no_import_cycles() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_engine_imports_no_concrete_forge() -> None:
    for name in ENGINE:
        assert name in MODULES, f"{name} moved: update ENGINE"
        concrete = {m for m in imports_of(name) if m.startswith(CONCRETE_FORGES)}
        assert not concrete, f"{name} imports {sorted(concrete)}: reach forges through lockstep.forges"


def test_every_forge_the_registry_names_is_a_package_with_wire() -> None:
    from lockstep.forges import FORGES

    for name, module in FORGES.items():
        path = MODULES.get(module)
        assert path is not None and path.name == "__init__.py", (name, module)
        assert "def wire(" in path.read_text(encoding="utf-8"), module


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/support/, so a test module never depends on another's internals."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in tests.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.rpartition(".")[2].startswith("test_")]
    assert offenders == []

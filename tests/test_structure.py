"""The shape of the codebase, read from the source: no import cycles among the project's
modules, the architecture's nevers, and modules and functions of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "worker", "service")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (a module, or the package holding a name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Project modules ``module`` imports anywhere (top level or inside functions)."""
    tree = ast.parse(MODULES[module].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        found |= {m for m in map(_resolve, names) if m and m != module}
    return found


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack, path, on_path, done = [(start, iter(sorted(graph[start])))], [start], {start}, set()
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            path.pop()
            on_path.discard(node)
            done.add(node)
        elif child in on_path:
            return path[path.index(child):] + [child]
        elif child not in done:
            stack.append((child, iter(sorted(graph[child]))))
            path.append(child)
            on_path.add(child)
    return None


def test_the_import_graph_is_read() -> None:
    graph = {m: imports_of(m) for m in MODULES}
    assert "worker.contract" in graph["service.api.jobs"]
    assert "service.backend" in graph["service.app"]


def test_no_import_cycles() -> None:
    graph = {m: imports_of(m) for m in MODULES}
    cycles = [c for m in sorted(graph) if (c := _cycle_from(m, graph))]
    assert not cycles, " → ".join(cycles[0])


def test_a_cycle_would_be_found() -> None:
    assert _cycle_from("a", {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle_from("a", {"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(("package", "never"), [
    ("models", ("service", "worker")), ("worker", ("service",)), ("service", ("models",)),
])
def test_the_architectures_nevers(package: str, never: tuple[str, ...]) -> None:
    bad = {(m, i) for m in MODULES if m.split(".")[0] == package
           for i in imports_of(m) if i.split(".")[0] in never}
    assert not bad


def test_modules_and_functions_stay_small() -> None:
    long_modules, long_functions = [], []
    for module, path in MODULES.items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(module)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{module}.{node.name} ({length} lines)")
    assert not long_modules
    assert not long_functions

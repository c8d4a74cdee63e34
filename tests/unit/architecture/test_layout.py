"""The house rules a reviewer would otherwise check by hand.

- No import cycles among the modules of ``services/`` and ``streams/``: every import
  counts, also one inside a function (that is how a CLI module importing ``settings``
  back from ``services.cli.main`` hid its cycle), except under ``if TYPE_CHECKING``.
- No module reads the process environment except the configuration module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("services", "streams")
CONFIGURATION = {"streams/settings.py"}
ENV_READ_ALLOWED: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``module`` imports (the longest known prefix of each name)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(name: str) -> None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                if candidate != module:
                    found.add(candidate)
                return

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                resolve(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by a depth-first search (one per back edge)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    return cycles


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imported(name, path, known) for name, path in modules.items()}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_graph_sees_imports_inside_functions(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.x\n"
                    "def f():\n    from pkg.y import thing\n    from . import z\n")
    found = _imported("pkg.m", path, {"pkg", "pkg.m", "pkg.x", "pkg.y", "pkg.z"})
    assert found == {"pkg.y", "pkg.z"}  # the TYPE_CHECKING import does not count


def test_no_import_cycles_in_services_and_streams() -> None:
    graph = import_graph()
    assert "services.cli.main" in graph and "streams.settings" in graph
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _environment_reads(path: Path) -> list[int]:
    """Lines that touch ``os.environ`` or call ``os.getenv``/``os.putenv``."""
    names = {"environ", "getenv", "putenv", "environb", "unsetenv"}

    def reads(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr in names and isinstance(node.value, ast.Name) and (
                node.value.id == "os")
        if isinstance(node, ast.ImportFrom):
            return node.module == "os" and any(a.name in names for a in node.names)
        return False

    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if reads(node)]


def test_the_environment_reader_finder_finds_reads(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("import os\nfrom os import getenv\nA = os.environ.get('X')\n"
                    "B = {**os.environ}\nC = os.path.join('a')\n")
    assert sorted(set(_environment_reads(path))) == [2, 3, 4]


def test_only_the_configuration_reads_the_environment() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in CONFIGURATION or rel in ENV_READ_ALLOWED:
                continue
            offenders += [f"{rel}:{line}" for line in _environment_reads(path)]
    assert not offenders, "environment read outside the configuration: " + ", ".join(offenders)

"""The import layering of docs/architecture.md holds in the code, and no module imports itself in a circle.

The allowed imports are read from the table in docs/architecture.md (one home for the rule); the imports are
read from the source with the standard library's ast, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import REPO

ARCHITECTURE = REPO / "docs" / "architecture.md"


def allowed_imports() -> dict[str, set[str]]:
    """package -> the project packages it may import, from the "may import" table."""
    rows = re.findall(r"^\| `(\w+)/` \| ([^|]*) \|", ARCHITECTURE.read_text(), re.M)
    return {package: set(re.findall(r"`(\w+)/`", targets)) for package, targets in rows}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def project_modules(packages: set[str]) -> dict[str, Path]:
    return {module_name(p): p for package in packages for p in (REPO / package).rglob("*.py")}


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules a file imports (``from a.b import c`` names a.b, and a.b.c when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def import_graph(packages: set[str]) -> dict[str, set[str]]:
    modules = project_modules(packages)
    return {name: imports(path, modules) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            if group:
                found.append(sorted([node, *group]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_layering_table_names_every_package() -> None:
    allowed = allowed_imports()
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert set(allowed) == packages, "docs/architecture.md's table must list exactly the project's packages"
    assert allowed["models"] == set()  # the ground floor imports no other package of the project


def test_every_import_follows_the_layering() -> None:
    allowed = allowed_imports()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph(set(allowed)).items()
        for target in targets
        if target.split(".")[0] != module.split(".")[0] and target.split(".")[0] not in allowed[module.split(".")[0]]
    )
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    assert cycles(import_graph(set(allowed_imports()))) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_every_name_imported_from_the_project_is_defined_there() -> None:
    # A name moved to another module and left imported from the old one fails only when that file runs; the
    # scripts under verification/ run by hand, so CI would not see it otherwise.
    modules = project_modules(set(allowed_imports()))
    missing = sorted(
        f"{name}: from {node.module} import {alias.name}"
        for name, path in modules.items()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ImportFrom) and node.module in modules and not node.level
        for alias in node.names
        if alias.name not in top_level_names(modules[node.module]) and f"{node.module}.{alias.name}" not in modules
    )
    assert not missing, missing


def top_level_names(path: Path) -> set[str]:
    """What ``from module import name`` can take: the module's top-level definitions, assignments and imports."""
    names: set[str] = set()
    statements = list(ast.parse(path.read_text(), str(path)).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.If | ast.Try | ast.With):
            statements += [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            statements += [s for handler in getattr(node, "handlers", []) for s in handler.body]
    return names

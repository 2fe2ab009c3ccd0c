"""The package's shape, read from its source (ast): no import circle among hpo's modules, the
trainers below the file format and the database, a config leaf that imports nothing heavy, and a
docstring on every public definition.

Function-level imports count as much as top-level ones (a circle through a function-local
import is still a circle, only hidden until that function runs), and so do imports under
``if TYPE_CHECKING:`` (stricter than needed). Not seen: imports by string (the registries'
``module:function`` paths, ``packs.FAST_PATHS``) and the implicit import of parent packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpo"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str) -> set[str]:
    """The hpo modules that module ``name`` imports anywhere in its body (each ``from a.b
    import c`` counts as ``a.b.c`` when that is a module, else as ``a.b``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imported(name) for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read_from_the_source():
    # A reader that found nothing would pass every test below.
    assert {"hpo.config", "hpo.space", "hpo.datasets", "hpo.models"} <= GRAPH["hpo.sweep"]
    assert "hpo.config" in GRAPH["hpo.training.compile"]


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_hpos_modules():
    assert cycles(GRAPH) == []


def reachable(name: str) -> set[str]:
    """Every hpo module that importing ``name`` may import, through any chain of imports."""
    seen, todo = set(), [name]
    while todo:
        for other in GRAPH[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


@pytest.mark.parametrize("layer", ["hpo.sweep", "hpo.runner", "hpo.objective", "hpo.study",
                                   "hpo.store", "hpo.cli", "hpo.results"])
def test_the_trainers_import_neither_the_file_format_nor_the_runner_nor_the_database(layer):
    """Directly or through another module (``datasets/prepare.py`` once imported the sweep)."""
    offenders = {name: sorted(m for m in reachable(name) if m == layer or m.startswith(layer + "."))
                 for name in GRAPH if name.startswith("hpo.training")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_config_leaf_imports_nothing_heavy():
    tree = ast.parse(MODULES["hpo.config"].read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    assert roots <= {"__future__", "dataclasses", "re", "collections", "typing", "hpo"}
    assert GRAPH["hpo.config"] <= {"hpo.errors", "hpo.space"}


def undocumented(path: Path) -> list[str]:
    """Public modules, classes, functions and methods of ``path`` without a docstring; a method
    overriding a documented method of a base class in the same module shares its docstring."""
    tree = ast.parse(path.read_text())
    found = [] if ast.get_docstring(tree) else ["<module>"]
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}

    def documented_in_bases(cls: ast.ClassDef, name: str) -> bool:
        for base in cls.bases:
            parent = classes.get(getattr(base, "id", ""))
            if parent is None:
                continue
            for node in parent.body:
                if getattr(node, "name", None) == name and ast.get_docstring(node):
                    return True
            if documented_in_bases(parent, name):
                return True
        return False

    def visit(node: ast.AST, owner: ast.ClassDef | None, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if child.name.startswith("_"):
                continue
            inherited = owner is not None and documented_in_bases(owner, child.name)
            if not ast.get_docstring(child) and not inherited:
                found.append(prefix + child.name)
            if isinstance(child, ast.ClassDef):
                visit(child, child, f"{prefix}{child.name}.")

    visit(tree, None, "")
    return found


def test_the_docstring_check_sees_a_missing_docstring(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('"""M."""\nclass A:\n    """A."""\n    def f(self):\n        """F."""\n'
                      "class B(A):\n    def f(self): pass\n    def g(self): pass\n"
                      "def h(): pass\ndef _private(): pass\n")
    assert undocumented(source) == ["B", "B.g", "h"]


def test_every_public_definition_has_a_docstring():
    missing = {name: found for name, path in MODULES.items() if (found := undocumented(path))}
    assert missing == {}

"""The package's layers: no import cycle in src/fmgate (imports inside functions count; those under
``if TYPE_CHECKING:`` do not), and no module but ``_model.py`` reaches into a private name of
``Model`` (subclasses included), so that the layers can be read, and changed, one at a time."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "fmgate"


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str) -> set[str]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:  # `from . import _run` imports the module fmgate.cli._run
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycle_from(start: str) -> list[str] | None:
    """A shortest import path from ``start`` back to itself, if there is one."""
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        for nxt in sorted(GRAPH[path[-1]]):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                paths.append([*path, nxt])
    return None


def test_the_graph_sees_the_imports() -> None:
    assert "fmgate._recording" in GRAPH["fmgate._model"]
    assert "fmgate.cli._run" in GRAPH["fmgate.cli"]  # imported inside a function: counted


def test_no_import_cycle() -> None:
    cycles = {" -> ".join(c) for name in GRAPH if (c := _cycle_from(name)) is not None}
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def _model_private_names() -> set[str]:
    tree = ast.parse((PACKAGE / "_model.py").read_text(encoding="utf-8"))
    model = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model")
    names = {
        n.name
        for n in model.body
        if isinstance(n, ast.FunctionDef) and n.name.startswith("_") and not n.name.endswith("__")
    }
    for node in ast.walk(model):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "self" and node.attr.startswith("_"):
                names.add(node.attr)
    return names


def _reaches(path: Path, private: set[str]) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    subclasses = {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and any(ast.unparse(b).endswith("Model") for b in n.bases)
    }
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for node in ast.walk(cls):
            if not isinstance(node, ast.Attribute) or node.attr not in private:
                continue
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own or cls.name in subclasses:
                yield f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}"
    for node in tree.body:  # module-level functions
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and sub.attr in private:
                    yield f"{path.relative_to(SRC)}:{sub.lineno}: {ast.unparse(sub)}"


def test_no_module_reaches_into_a_private_name_of_model() -> None:
    private = _model_private_names()
    assert {"_backend", "_check_online"} <= private
    reaches = [
        reach
        for path in MODULES.values()
        if path.name != "_model.py"
        for reach in _reaches(path, private)
    ]
    assert not reaches, "private names of Model used elsewhere:\n" + "\n".join(reaches)

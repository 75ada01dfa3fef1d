"""lsgbench's modules import one another without a loop: with one, what a module sees depends on
which module was imported first (a function-level import only hides the loop)."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lsgbench"


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports, at module level or in a function."""
    files = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        package_name = name if path.name == "__init__.py" else name.rpartition(".")[0]  # what `.` refers to
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package_name.rsplit(".", node.level - 1)[0]
                    base = f"{parent}.{base}" if base else parent
                # `from . import record` imports a module; `from .record import SCHEMA`, a name of one
                imported |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names}
        graph[name] = {module for module in imported if module in files and module != name}
    return graph


def _loop(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        return err.args[1]
    return None


def test_lsgbench_has_no_import_loop():
    graph = import_graph(PACKAGE)
    assert {"lsgbench.grouping", "lsgbench.plots"} <= graph["lsgbench.report"]
    assert not graph["lsgbench.plots"] & {"lsgbench.report", "lsgbench.grouping"}  # plots draw plain rows
    loop = _loop(graph)
    assert loop is None, f"import loop: {' -> '.join(loop)}"


def test_a_loop_through_a_function_level_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    graph = import_graph(package)
    assert graph == {"pkg": set(), "pkg.sub": set(), "pkg.a": {"pkg.sub.b"}, "pkg.sub.b": {"pkg.a"}}
    assert _loop(graph) is not None

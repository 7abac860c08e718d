"""The package's layout: no import loops, public paths as they were, old journals still resume."""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import pytest

import mtasklite_like
from mtasklite_like import Pool

PACKAGE = Path(mtasklite_like.__file__).parent
NAME = "mtasklite_like"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = (NAME, *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path], *, lazy: bool) -> dict[str, set[str]]:
    """What each module imports from the package when it is run (``if TYPE_CHECKING:`` blocks
    excluded); with ``lazy``, imports inside functions count too. Importing ``a.b.c`` imports the
    package ``a.b`` first, so that counts as an import of ``a.b``."""

    class Visitor(ast.NodeVisitor):
        def __init__(self, module: str, package: bool) -> None:
            self.module, self.package, self.found = module, package, set()

        def visit_FunctionDef(self, node: ast.AST) -> None:
            if lazy:
                self.generic_visit(node)

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = self.module.split(".") if self.package else self.module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                self.found.add(sub if sub in modules else target)

        def visit_Import(self, node: ast.Import) -> None:
            self.found.update(alias.name for alias in node.names)

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        visitor = Visitor(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text()))
        edges = set()
        for target in visitor.found:
            if target not in modules or target == module:
                continue
            edges.add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):
                package = ".".join(parts[:i])
                if package != module and not module.startswith(package + "."):
                    edges.add(package)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_loops() -> None:
    """Module-level imports form no loop. Counting imports made inside functions too, the only
    loop left is the backend registry's: ``_backends`` imports a backend's module when a pool
    first runs on it, and that module imports what workers run; the pool, the engine, the
    journal and the layers take part in none."""
    modules = _modules()
    assert _cycles(_imports(modules, lazy=False)) == []
    for cycle in _cycles(_imports(modules, lazy=True)):
        outside = [m for m in cycle if not m.startswith((f"{NAME}._backends", f"{NAME}._worker"))]
        assert outside == [], f"an import loop through {outside}: {cycle}"


@pytest.mark.parametrize(
    "path",
    ["mtasklite_like.processes", "mtasklite_like.threads", "mtasklite_like.ray", "mtasklite_like.pqdm",
     "mtasklite_like.pqdm.processes", "mtasklite_like.pqdm.threads", "mtasklite_like.pool",
     "mtasklite_like.delayed_init", "mtasklite_like.version", "mtasklite_like.constants",
     "mtasklite_like.utils", "mtasklite_like.mapreduce", "mtasklite_like.reductions",
     "mtasklite_like.workercontext", "mtasklite_like.workercontext.reductions",
     "mtasklite_like.mmengine", "mtasklite_like.multiprocessing", "mtasklite_like.mp_lock"],
)
def test_public_modules_import(path: str) -> None:
    importlib.import_module(path)


def test_top_level_holds_only_public_modules_and_the_core() -> None:
    """Private code lives in subpackages named for what they do; at the top level only the
    public modules and the few private ones every part shares."""
    private = sorted(p.stem for p in PACKAGE.glob("_*.py") if p.stem != "__init__" and p.stem != "__main__")
    assert private == ["_errors", "_options", "_pool", "_version"]
    packages = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name.startswith("_")
                      and (p / "__init__.py").exists())
    assert packages == ["_backends", "_cli", "_dropins", "_engine", "_journal", "_logs", "_memory", "_worker"]


def test_a_journal_naming_the_old_module_of_its_errors_resumes(tmp_path: Path) -> None:
    """Journals store exceptions by module and class name; the journal's own errors moved to
    ``_errors``, and a journal that names their old module still resumes."""
    old = types.ModuleType("mtasklite_like._journal_format")

    class JournalPicklingError(Exception):  # as the old module had it, by name
        pass

    JournalPicklingError.__module__ = old.__name__
    JournalPicklingError.__qualname__ = "JournalPicklingError"
    old.JournalPicklingError = JournalPicklingError  # type: ignore[attr-defined]

    def fail_b(item: str) -> str:
        if item == "b":
            raise JournalPicklingError("stored by an older version")
        return item.upper()

    run_dir = str(tmp_path / "run")
    sys.modules[old.__name__] = old
    try:
        results = list(Pool(fail_b, 1, exception_behavior="ignore", journal=run_dir)(["a", "b", "c"]))
    finally:
        del sys.modules[old.__name__]
    assert results[0] == "A" and isinstance(results[1], JournalPicklingError)

    from mtasklite_like import JournalPicklingError as Current

    again = list(Pool(fail_b, 1, exception_behavior="ignore", journal=run_dir, journal_keep_failures=True)(
        ["a", "b", "c"]
    ))
    assert again[0] == "A" and again[2] == "C"
    assert type(again[1]) is Current and "stored by an older version" in str(again[1])

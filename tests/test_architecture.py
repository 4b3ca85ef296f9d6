"""The shape of the code: the import graph of cskd/, analysis/ and app/ (installed as cskd.analysis
and cskd.app; function-local imports counted) has no cycle and at most MAX_LEVELS levels, no
module is longer than MAX_LINES lines, and analysis/ imports nothing of cskd/ or app/.

Levels: a module that imports no other module of the project is on level 1; every other one is
one level above the highest module it imports. An edge goes to the module named by the import
(`from cskd.runfolder import RunFolder` -> cskd.runfolder, the package's __init__); `from pkg
import mod`, where mod is a submodule, goes to the submodule. The implicit import of a parent
package is not counted (it is not a dependency one writes).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cskd", "analysis", "app")
MAX_LEVELS = 10
MAX_LINES = 400


def module_files() -> dict[str, Path]:
    """{dotted module name: file} of every Python file under the project's packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[0] != "cskd":  # analysis/ and app/ are installed as cskd.analysis and cskd.app
                parts.insert(0, "cskd")
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` (file `path`) imports anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import cskd.x.y` -> the deepest module that exists
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's level (see the module docstring); the graph must be acyclic."""
    memo: dict[str, int] = {}

    def level(v: str) -> int:
        if v not in memo:
            memo[v] = 1 + max((level(w) for w in graph[v]), default=0)
        return memo[v]

    return {v: level(v) for v in graph}


def test_graph_helpers_on_a_known_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": set(), "d": {"e"}, "e": {"d"}}
    assert cycles(graph) == [["d", "e"]]
    assert levels({k: v for k, v in graph.items() if k in "abc"}) == {"a": 3, "b": 2, "c": 1}


def test_imports_of_counts_function_local_and_relative_imports(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n    from .c import x\n")
    modules = {"p": pkg / "__init__.py", "p.a": pkg / "a.py", "p.b": pkg / "b.py", "p.c": pkg / "c.py"}
    assert imports_of("p.a", pkg / "a.py", modules) == {"p.b", "p.c"}


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_at_most_ten_import_levels():
    lv = levels(import_graph())
    deepest = max(lv, key=lv.get)
    assert lv[deepest] <= MAX_LEVELS, f"{deepest} is on level {lv[deepest]}"


@pytest.mark.parametrize("name", sorted(module_files()))
def test_module_length(name):
    n = len(module_files()[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines"


def test_analysis_imports_nothing_of_cskd_or_app():
    graph = import_graph()
    inside = ("cskd.analysis.", "cskd.analysis")
    bad = {m: sorted(t for t in ts if not t.startswith(inside)) for m, ts in graph.items() if m.startswith(inside)}
    assert not {m: ts for m, ts in bad.items() if ts}

"""The code reads like its architecture: no import cycles between packages or modules, a core that names no
adapter, no long functions, no test-only dependency in the package."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pveoci"
MAX_LINES = 60
# The core reaches the cluster only through pveoci.backends.base; these are adapters and front ends.
NOT_IN_CORE = ("pveoci.pve", "pveoci.ssh", "pveoci.backends.api", "pveoci.backends.onnode", "pveoci.connect",
               "pveoci.cli", "pveoci.template.sftp", "pveoci.template.api_upload", "pveoci.doctor",
               "pveoci.backends.pct", "pveoci.backends.pvesh", "pveoci.backends.auto", "pveoci.backends.runner",
               "pveoci.backends.sshrunner", "pveoci.backends.reads")


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _imports(module: str, tree: ast.Module) -> set[str]:
    """Every pveoci module it imports, wherever the import is (lazy ones too), but for type checking only."""
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pveoci"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pveoci"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _unit(module: str, known: set[str]) -> str:
    """The package a module belongs to: pveoci.<sub> for subpackages, the module itself at the top."""
    parts = module.split(".")
    if len(parts) >= 2 and f"pveoci.{parts[1]}" in known and (PACKAGE / parts[1]).is_dir():
        return f"pveoci.{parts[1]}"
    return module if module in known else ".".join(parts[:-1])


def test_packages_import_each_other_without_cycles() -> None:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = defaultdict(set)
    for name, tree in modules.items():
        if name == "pveoci":
            continue  # the front door re-exports everything, lazily
        source = _unit(name, known)
        for target in _imports(name, tree):
            unit = _unit(target, known)
            if unit not in (source, "pveoci") and unit in known:
                graph[source].add(unit)
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif len(path) < 12:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "import cycles between packages:\n" + "\n".join(sorted(set(cycles))[:10])


def test_modules_import_each_other_without_cycles() -> None:
    """Within a package too (lazy imports included): a cycle of modules is one concern cut in two. A package's
    __init__ is its front door and may name its modules."""
    modules = _modules()
    known = set(modules)
    doors = {name for name in known if (PACKAGE.parent / name.replace(".", "/")).is_dir()}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, tree in modules.items():
        if name in doors:
            continue
        for target in _imports(name, tree):
            module = target if target in known else target.rpartition(".")[0]
            if module in known and module not in doors and module != name:
                graph[name].add(module)
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == path[0]:
                cycles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and len(path) < 8:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "import cycles between modules:\n" + "\n".join(sorted(cycles)[:10])


def test_the_runtime_core_names_no_adapter() -> None:
    modules = _modules()
    offending = sorted(f"{name} imports {target}" for name, tree in modules.items() if name.startswith("pveoci.runtime")
                       for target in _imports(name, tree) if target.startswith(NOT_IN_CORE))
    assert offending == []
    text = "\n".join((PACKAGE / "runtime").joinpath(p).read_text() for p in sorted(
        p.name for p in (PACKAGE / "runtime").glob("*.py")))
    assert "PveClient" not in text
    assert "pve.client" not in text


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert long == [], "functions over 60 lines:\n" + "\n".join(long)


def test_the_package_never_imports_the_test_only_fake_cluster() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert "fakepve" not in path.read_text(), path

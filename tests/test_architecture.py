"""The code reads like its architecture: no import cycles between packages or modules, a core that imports only
what its allow-list names (no adapter), no long functions, no test-only dependency in the package."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pveoci"
MAX_LINES = 60
#: The core, and the only pveoci modules each part of it may import (a package allows its modules). The core
#: reaches the cluster through pveoci.backends.base alone: no adapter (API client, SSH, pct, a backend, the
#: template's transports), no front end (connect, the command line, doctor's checks).
ALLOWED: dict[str, tuple[str, ...]] = {
    "pveoci.errors": ("pveoci.models",),
    "pveoci.models": (),
    "pveoci.process": (),
    "pveoci.signals": (),
    "pveoci.progress": (),
    "pveoci.marker": ("pveoci.errors",),
    "pveoci.card": ("pveoci.marker",),
    "pveoci.userfile": ("pveoci.errors",),
    "pveoci.settings": ("pveoci.errors", "pveoci.userfile", "pveoci.lxc.properties"),
    "pveoci.retry": ("pveoci.errors",),
    "pveoci.hooks": ("pveoci.errors",),
    "pveoci.cache": ("pveoci.errors", "pveoci.models"),
    # A bundle made of an image names its type (pveoci.image.source.Source), for type checking only.
    "pveoci.oci": ("pveoci.errors", "pveoci.userfile", "pveoci.image.source"),
    # Images: references, the store (skopeo, a program of this machine, as the packer is), layers merged into
    # the packer's stream, the image's config as a spec.
    "pveoci.image": ("pveoci.errors", "pveoci.lxc", "pveoci.oci", "pveoci.init", "pveoci.template.pack",
                     "pveoci.template.frames", "pveoci.template.manifest"),
    "pveoci.lxc": ("pveoci.errors", "pveoci.models", "pveoci.oci", "pveoci.process", "pveoci.signals",
                   "pveoci.marker"),
    "pveoci.planning": ("pveoci.errors", "pveoci.models", "pveoci.settings", "pveoci.oci", "pveoci.lxc",
                        "pveoci.template.pack", "pveoci.image.source"),
    "pveoci.runtime": ("pveoci.backends.base", "pveoci.errors", "pveoci.models", "pveoci.settings", "pveoci.cache",
                       "pveoci.hooks", "pveoci.marker", "pveoci.card", "pveoci.process", "pveoci.progress",
                       "pveoci.retry", "pveoci.signals", "pveoci.oci", "pveoci.lxc", "pveoci.planning", "pveoci.init",
                       "pveoci.template.pack", "pveoci.template.manifest", "pveoci.template.delta",
                       "pveoci.template.frames", "pveoci.template.tree", "pveoci.template.native",
                       "pveoci.standin", "pveoci.image"),
    # The stand-in: a local process the runtime leaves; its program (relay.py) is the standard library's only.
    "pveoci.standin": ("pveoci.errors", "pveoci.cache"),
}


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


def _named(tree: ast.Module, known: set[str]) -> set[str]:
    """The pveoci modules a module's imports name, type checking's too: `from pveoci import errors` names
    pveoci.errors, `from pveoci.cache import Cache` pveoci.cache, `from pveoci import connect` the front door."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("pveoci"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pveoci"):
            out.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                       for a in node.names)
    return out


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


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_core_imports_only_what_its_allow_list_names() -> None:
    modules = _modules()
    known = set(modules)
    offending = []
    for name, tree in sorted(modules.items()):
        part = next((p for p in ALLOWED if _within(name, p)), None)
        if part is None:
            continue
        for target in sorted(_named(tree, known)):
            if not _within(target, part) and not any(_within(target, allowed) for allowed in ALLOWED[part]):
                offending.append(f"{name} imports {target}")
    assert offending == [], "imports the core's allow-list does not name:\n" + "\n".join(offending)


def test_the_allow_list_names_what_exists() -> None:
    known = set(_modules())
    named = {*ALLOWED, *(m for allowed in ALLOWED.values() for m in allowed)}
    assert sorted(m for m in named if m not in known) == []


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


def test_no_module_name_occurs_twice() -> None:
    """A module's name says what it holds, once (issue 18): a second `events.py` or `features.py` elsewhere would
    make a reader ask which one; a cli/ file keeps its command's name and the library's module takes another."""
    from collections import Counter

    names = Counter(path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []

"""pveoci.testing stays apart: nothing in pveoci imports it, and loading the plugin (every pytest run of a project
with pveoci installed does) imports neither responses nor requests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pveoci"


def test_loading_the_plugin_imports_neither_responses_nor_requests() -> None:
    code = ("import sys, pveoci.testing, pveoci.testing.plugin\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('responses', 'requests', 'paramiko'))\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_nothing_in_pveoci_imports_its_testing_package() -> None:
    offending = []
    for path in PACKAGE.rglob("*.py"):
        if "testing" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offending += [f"{path.name}: {n}" for n in names if n.startswith("pveoci.testing")]
    assert offending == []

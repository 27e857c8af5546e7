"""The house plan holds: import-linter's contracts (pyproject.toml) pass, and no module takes another's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("prune", "export", "targets", "tools")


def test_import_contracts_hold() -> None:
    # lint-imports reads [tool.importlinter] from pyproject.toml: layers, independence, no cycles among siblings.
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout, out.stdout


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}")
    return found


def test_no_module_imports_a_private_name_of_another() -> None:
    found = [hit for pkg in PACKAGES for f in sorted((ROOT / pkg).rglob("*.py")) for hit in _private_imports(f)]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def _submodule_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] in ("prune", "export", "targets") and "." in name:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    return found


def test_tools_enters_prune_export_and_targets_by_their_front_doors_only() -> None:
    # The packages' __init__.py is their public face; tools/ reaching past it couples to their insides.
    found = [hit for f in sorted((ROOT / "tools").rglob("*.py")) for hit in _submodule_imports(f)]
    assert not found, "tools/ imports a submodule of a lower package:\n" + "\n".join(found)

"""main.py is a module, not a package, so import-linter cannot see it: check it here."""

from __future__ import annotations

import ast
from pathlib import Path

MAIN = Path(__file__).parents[2] / "functions" / "main.py"


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_functions_main_imports_only_the_functions_side() -> None:
    assert imported_roots(MAIN) <= {"firebase_functions", "control", "wa_wire", "__future__"}


def test_the_check_sees_imports() -> None:
    assert "connector" in imported_roots(Path(__file__).parents[2] / "connector" / "__main__.py")

"""The layout's rules hold: the plumbing in shared/ never imports the services it serves,
and no module grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def test_shared_never_imports_services() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "shared").rglob("*.py"))
        for name in sorted(_imported_modules(path))
        if name == "services" or name.startswith("services.")
    ]
    assert offenders == []


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import services.router\nfrom services.audit import cli\n"
        "import importlib\nimportlib.import_module('services')\n",
        encoding="utf-8",
    )
    assert _imported_modules(source) >= {"services.router", "services.audit", "services"}


def test_no_module_of_services_or_shared_reaches_600_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {lines}"
        for folder in ("services", "shared")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) >= MAX_LINES
    ]
    assert long == []

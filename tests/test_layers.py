"""No import runs upward: methods sit below scoring, the detector, the CLI and the protocols."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import reconad.methods as methods_pkg
from reconad import scoring
from reconad.methods import maps

METHODS_DIR = Path(methods_pkg.__file__).parent
#: Modules above the methods; nothing under ``reconad/methods`` may import them.
ABOVE_METHODS = (
    "reconad.scoring",
    "reconad.detector",
    "reconad.cli",
    "reconad.protocols",
    "reconad.evaluate",
)
MODULES = sorted(METHODS_DIR.rglob("*.py"))


def _imported(tree: ast.AST) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names (top level or inside a
    function), with ``from pkg import mod`` also counted as ``pkg.mod``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _upward(name: str) -> bool:
    return any(name == mod or name.startswith(mod + ".") for mod in ABOVE_METHODS)


def test_the_method_modules_are_found():
    assert METHODS_DIR / "maps.py" in MODULES and len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(METHODS_DIR)))
def test_no_method_module_imports_upward(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    upward = sorted(name for name in _imported(tree) if _upward(name))
    assert not upward, f"{path.relative_to(METHODS_DIR)} imports {upward} (above the methods)"


def test_map_primitives_import_nothing_from_reconad():
    tree = ast.parse((METHODS_DIR / "maps.py").read_text())
    assert not [name for name in _imported(tree) if name.split(".")[0] == "reconad"]


def test_scoring_re_exports_the_map_primitives():
    for name in maps.__all__:
        assert getattr(scoring, name) is getattr(maps, name), name

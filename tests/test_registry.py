"""Methods are registered by discovery: a folder under ``reconad/methods`` is enough."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import reconad.methods as methods_pkg
from reconad.methods import base, get_method, list_methods

METHODS_DIR = Path(methods_pkg.__file__).parent
ROOT = METHODS_DIR.parents[2]


def _package_of(name: str) -> str:
    return get_method(name).__module__.split(".")[2]


def test_every_method_folder_registers_a_method():
    folders = sorted(p.parent.name for p in METHODS_DIR.glob("*/method.py"))
    assert folders, "no method folder found"
    registered = {_package_of(name) for name in list_methods()}
    for folder in folders:
        assert folder in registered, f"methods/{folder}/ registers no method"
    assert sorted(methods_pkg.METHOD_PACKAGES) == sorted(registered)


def test_every_method_has_its_folder_and_card():
    for name in list_methods():
        folder = METHODS_DIR / _package_of(name)
        assert (folder / "method.py").is_file(), f"{name}: no {folder}/method.py"
        assert (folder / "README.md").is_file(), f"{name}: no card {folder}/README.md"


TOY = """
from dataclasses import dataclass

from reconad.methods.base import Method, register


@dataclass
class ToyConfig:
    lr: float = 1e-3


@register
class Toy(Method):
    name = "toy_from_a_new_folder"
    summary = "a method that exists only in this test"
    Config = ToyConfig
"""


def test_a_new_folder_is_enough(tmp_path, monkeypatch):
    """A folder with an ``__init__.py`` importing its ``method.py`` registers its method
    when the package is discovered: no line to add anywhere else."""
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "method.py").write_text(TOY)
    (folder / "__init__.py").write_text("from reconad.methods.toy.method import Toy  # noqa\n")
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # restored afterwards
    monkeypatch.setattr(methods_pkg, "__path__", [*methods_pkg.__path__, str(tmp_path)])
    try:
        assert "toy" in methods_pkg._discover()
        assert get_method("toy_from_a_new_folder").__module__ == "reconad.methods.toy.method"
    finally:
        for mod in ("reconad.methods.toy.method", "reconad.methods.toy"):
            sys.modules.pop(mod, None)
    assert "toy_from_a_new_folder" in list_methods()


def test_no_hand_written_registration_lines():
    init = (METHODS_DIR / "__init__.py").read_text()
    assert "pkgutil.iter_modules" in init
    for folder in methods_pkg.METHOD_PACKAGES:
        assert f"import {folder}" not in init and f"methods.{folder}" not in init, folder


def test_shared_modules_are_not_method_packages():
    assert not {"base", "blocks"} & set(methods_pkg.METHOD_PACKAGES)
    assert all((METHODS_DIR / m).is_dir() for m in methods_pkg.METHOD_PACKAGES)


def test_method_cards_are_up_to_date():
    """The results tables in the cards match benchmarks/results (run
    ``python benchmarks/method_cards.py`` after committing results)."""
    spec = importlib.util.spec_from_file_location(
        "method_cards", ROOT / "benchmarks" / "method_cards.py"
    )
    cards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cards)
    assert cards.main(["--check"]) == 0, "stale method cards: run benchmarks/method_cards.py"

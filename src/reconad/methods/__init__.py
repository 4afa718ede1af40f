"""Registered methods. Importing this package registers every built-in method.

Registration is by discovery: every subpackage (or module) of ``reconad.methods`` other than
``base``, ``blocks`` and ``maps`` (shared code) is imported, and its ``@register`` decorators
list its methods. A new method is one new folder, ``methods/<name>/`` with ``network.py``,
``method.py``, ``README.md`` and an ``__init__.py`` that imports ``method``.
"""

import importlib
import pkgutil

from reconad.methods.base import (
    Method,
    OptimGroup,
    ScoreOutput,
    Stage,
    get_method,
    list_methods,
    register,
)

__all__ = [
    "Method",
    "OptimGroup",
    "ScoreOutput",
    "Stage",
    "get_method",
    "list_methods",
    "register",
]

#: Modules of this package that hold shared code, not methods.
NOT_METHODS = frozenset({"base", "blocks", "maps"})


def _discover() -> list[str]:
    """Import every method subpackage of this package (sorted, so registration order is
    fixed); returns their names."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_METHODS)
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


#: The method packages found and imported, e.g. ``["ae", "arnet", ...]``.
METHOD_PACKAGES = _discover()

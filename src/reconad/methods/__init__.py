"""Registered methods. Importing this package registers every built-in method."""

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

from reconad.methods import ae as _ae  # noqa: E402,F401  (registers ae, ssim_ae)
from reconad.methods import arnet as _arnet  # noqa: E402,F401  (arnet)
from reconad.methods import classical as _classical  # noqa: E402,F401  (pca, iforest, ocsvm)
from reconad.methods import ddrid as _ddrid  # noqa: E402,F401  (ddrid)
from reconad.methods import draem as _draem  # noqa: E402,F401  (draem)
from reconad.methods import rotnet_ae as _rotnet_ae  # noqa: E402,F401  (rotnet_ae)
from reconad.methods import utad as _utad  # noqa: E402,F401  (utad)

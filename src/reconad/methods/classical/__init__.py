"""Classical baselines on raw pixels: importing this package registers ``pca``, ``iforest``
and ``ocsvm``.

Layout: ``method.py`` only (scikit-learn fits, torch scores from buffers; no network);
``README.md`` is the card of all three.
"""

from reconad.methods.classical.method import (
    IsolationForestMethod,
    OneClassSVMMethod,
    PCAReconstruction,
    average_path_length,
    resolve_gamma,
)

__all__ = [
    "IsolationForestMethod",
    "OneClassSVMMethod",
    "PCAReconstruction",
    "average_path_length",
    "resolve_gamma",
]

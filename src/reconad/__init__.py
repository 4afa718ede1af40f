"""reconad: unsupervised image anomaly detection by reconstruction."""

__version__ = "0.1.0"

from reconad.data.imageset import DataError, ImageSet  # noqa: E402
from reconad.detector import Detector  # noqa: E402
from reconad.methods.base import list_methods  # noqa: E402

__all__ = ["DataError", "Detector", "ImageSet", "__version__", "list_methods"]

"""Readers for the official python-pickle releases of CIFAR-10 and CIFAR-100.

Layouts (as unpacked from ``cifar-10-python.tar.gz`` and ``cifar-100-python.tar.gz``)::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/train, test, meta

Each batch is a pickled dict (bytes keys, written by Python 2) holding ``data``, a uint8
``(N, 3072)`` array of row-major RGB planes, and a list of labels.

Pickles are the only format these official files come in, so this is the one place in
reconad that unpickles anything. The unpickler below only resolves the few numpy names an
array needs, so a tampered file fails with a DataError instead of running code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from reconad.data.imageset import DataError, ImageSet

__all__ = ["read_cifar10_pickles", "read_cifar100_pickles"]

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"

# The globals a pickled numpy array refers to (numpy 2 renamed numpy.core to numpy._core),
# and _codecs.encode, which Python 3 uses for bytes in protocol-2 pickles.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves numpy array names only (no arbitrary callables)."""

    def find_class(self, module: str, name: str):
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        try:
            return super().find_class(*target)
        except (ImportError, AttributeError):  # numpy < 2 has no numpy._core
            return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    """Load one official CIFAR pickle as a dict with bytes keys."""
    try:
        with open(path, "rb") as f:
            # Equivalent to pickle.load(f, encoding="bytes"), restricted to numpy arrays.
            obj = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: CIFAR batch file not found") from None
    except Exception as err:  # any unpickling failure means the file is unusable
        raise DataError(
            f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return obj


def _get(batch: dict, key: str, path: Path):
    value = batch.get(key.encode(), batch.get(key))
    if value is None:
        found = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
        raise DataError(f"{path}: missing key '{key}' (found {found})")
    return value


def _names(meta: dict, key: str, path: Path) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in _get(meta, key, path)]


def _images_labels(batch: dict, label_key: str, n_classes: int, path: Path):
    """Validated ``(N, 3, 32, 32)`` uint8 images and int64 labels of one batch."""
    data = np.asarray(_get(batch, "data", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: 'data' must be uint8 of shape (N, 3072); got {data.dtype} {data.shape}"
        )
    labels = np.asarray(_get(batch, label_key, path))
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: '{label_key}' must be {len(data)} integers; got {labels.dtype} {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{path}: labels outside 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _locate(directory: str | Path, name: str) -> Path:
    """``directory/name`` if present, else ``directory`` itself (already the batch folder)."""
    directory = Path(directory)
    if (directory / name).is_dir():
        return directory / name
    if not directory.is_dir():
        raise DataError(f"{directory}: CIFAR folder not found")
    return directory


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")


def read_cifar10_pickles(directory: str | Path, split: str) -> ImageSet:
    """Read CIFAR-10 from the official python-pickle release.

    Args:
        directory: ``cifar-10-batches-py`` itself or the folder that contains it.
        split: ``"train"`` (data_batch_1..5, 50,000 images) or ``"test"`` (test_batch).

    Returns:
        ImageSet of ``(N, 3, 32, 32)`` uint8 images, labels 0..9 and the class names from
        ``batches.meta``.

    Raises:
        DataError: a batch or the meta file is missing, unreadable or of the wrong shape.
    """
    _check_split(split)
    folder = _locate(directory, CIFAR10_DIR)
    names = _names(_load_pickle(folder / "batches.meta"), "label_names", folder / "batches.meta")
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [
        _images_labels(_load_pickle(folder / f), "labels", len(names), folder / f) for f in files
    ]
    return ImageSet(
        images=np.concatenate([p[0] for p in parts]),
        labels=np.concatenate([p[1] for p in parts]),
        class_names=names,
        meta={"source": str(folder), "split": split},
    )


def read_cifar100_pickles(directory: str | Path, split: str, coarse: bool = True) -> ImageSet:
    """Read CIFAR-100 from the official python-pickle release.

    Args:
        directory: ``cifar-100-python`` itself or the folder that contains it.
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        coarse: True for the 20 super-class labels and names (the usual one-class anomaly
            detection protocol), False for the 100 fine classes.

    Returns:
        ImageSet of ``(N, 3, 32, 32)`` uint8 images with labels and class names.

    Raises:
        DataError: a file is missing, unreadable or of the wrong shape.
    """
    _check_split(split)
    folder = _locate(directory, CIFAR100_DIR)
    kind = "coarse" if coarse else "fine"
    names = _names(_load_pickle(folder / "meta"), f"{kind}_label_names", folder / "meta")
    path = folder / split
    images, labels = _images_labels(_load_pickle(path), f"{kind}_labels", len(names), path)
    return ImageSet(
        images=images,
        labels=labels,
        class_names=names,
        meta={"source": str(folder), "split": split, "labels": kind},
    )

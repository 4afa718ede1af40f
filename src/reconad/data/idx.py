"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or raw.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data. The files are read whole:
the largest (60,000 MNIST images) is 47 MB. Gzip is detected by its magic bytes, not by the
file name, because copies of these files are often renamed or unpacked by hand.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from reconad.data.imageset import DataError, ImageSet

__all__ = ["read_idx", "read_idx_array"]

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> numpy dtype (big-endian, as the format specifies).
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

DIGIT_NAMES = [str(i) for i in range(10)]


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it starts with the gzip magic bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: IDX file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read IDX file ({err})") from err
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path}: gzip stream is truncated or corrupt ({err})") from err


def read_idx_array(path: str | Path) -> np.ndarray:
    """Read one IDX file into an array of its stored type and shape.

    Args:
        path: an IDX file, gzipped or not.

    Returns:
        A writable array with the file's dimensions and native byte order.

    Raises:
        DataError: the file is missing, has a wrong magic number, an unknown type code, or
            holds fewer (or more) data bytes than its header declares.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'}; "
            "expected 0000 followed by a type code and the number of dimensions)"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_len
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX file: header declares shape {dims} ({expected} data "
            f"bytes) but only {found} bytes follow"
        )
    if found > expected:
        raise DataError(
            f"{path}: IDX file has {found - expected} bytes beyond the declared shape {dims}"
        )
    array = np.frombuffer(data, dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a native-order, writable copy


def read_idx(
    images_path: str | Path,
    labels_path: str | Path | None = None,
    class_names: list[str] | None = None,
) -> ImageSet:
    """Read an MNIST-style pair of IDX files (images and labels) into an ImageSet.

    Args:
        images_path: uint8 IDX file of shape ``(N, H, W)``, gzipped or raw.
        labels_path: uint8 IDX file of shape ``(N,)``, or None for an unlabelled set.
        class_names: names of the label values; defaults to the digits ``"0"`` .. ``"9"``
            (MNIST). Fashion-MNIST passes its garment names.

    Returns:
        ImageSet with images ``(N, 1, H, W)`` uint8.

    Raises:
        DataError: a file is unreadable or truncated, has the wrong type or number of
            dimensions, the counts differ, or a label is outside ``class_names``.
    """
    images = read_idx_array(images_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W); "
            f"got {images.dtype} with shape {images.shape}"
        )
    names = list(class_names) if class_names is not None else list(DIGIT_NAMES)
    labels = None
    if labels_path is not None:
        labels = read_idx_array(labels_path)
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(
                f"{labels_path}: expected uint8 labels of shape (N,); "
                f"got {labels.dtype} with shape {labels.shape}"
            )
        if len(labels) != len(images):
            raise DataError(
                f"{labels_path} holds {len(labels)} labels but {images_path} holds "
                f"{len(images)} images"
            )
        if len(labels) and int(labels.max()) >= len(names):
            raise DataError(
                f"{labels_path}: label {int(labels.max())} is outside the "
                f"{len(names)} class names {names}"
            )
    return ImageSet(
        images=images[:, None],
        labels=labels,
        class_names=names,
        meta={"source": str(images_path)},
    )

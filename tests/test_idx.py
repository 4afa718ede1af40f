"""IDX reader: format checks on tiny fixtures, and the real MNIST / Fashion-MNIST files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from reconad.data import DataError
from reconad.data.idx import read_idx, read_idx_array

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (uint8 or big-endian int32)."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    labels = np.array([0, 3, 9, 1, 3], dtype=np.uint8)
    return tmp_path, images, labels


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is missing (expected ../shared/data beside the repo)")
    return path


def test_reads_raw_and_gzip_detected_by_magic_not_name(tiny):
    tmp, images, labels = tiny
    # gzipped content under a plain name, raw content under a .gz name: the bytes decide
    img = write_idx(tmp / "images.bin", images, gz=True)
    lab = write_idx(tmp / "labels.gz", labels, gz=False)
    data = read_idx(img, lab)
    assert data.images.shape == (5, 1, 4, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[:, 0], images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.class_names == [str(i) for i in range(10)]
    assert data.images.flags.writeable


def test_custom_class_names_and_unlabelled(tiny):
    tmp, images, labels = tiny
    img = write_idx(tmp / "i", images)
    names = list("abcdefghij")
    assert read_idx(img, write_idx(tmp / "l", labels), class_names=names).class_names == names
    assert read_idx(img).labels is None


def test_other_types_big_endian(tmp_path):
    values = np.array([[1, -2], [70000, 3]], dtype=">i4")
    out = read_idx_array(write_idx(tmp_path / "x", values))
    np.testing.assert_array_equal(out, values)
    assert out.dtype.isnative


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file(tiny, gz):
    tmp, images, _ = tiny
    data = idx_bytes(images)[:-7]
    path = tmp / "short-idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"short-idx: truncated IDX file"):
        read_idx_array(path)


def test_truncated_gzip_stream(tiny):
    tmp, images, _ = tiny
    path = tmp / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(images))[:-20])
    with pytest.raises(DataError, match=r"cut.gz: gzip stream is truncated or corrupt"):
        read_idx_array(path)


def test_wrong_magic(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match=r"not-idx: not an IDX file \(magic number 89504e47"):
        read_idx_array(path)


def test_unknown_type_code_and_extra_bytes(tiny):
    tmp, images, _ = tiny
    bad = bytearray(idx_bytes(images))
    bad[2] = 0x07
    (tmp / "code").write_bytes(bytes(bad))
    with pytest.raises(DataError, match=r"code: unknown IDX type code 0x07"):
        read_idx_array(tmp / "code")
    (tmp / "long").write_bytes(idx_bytes(images) + b"xx")
    with pytest.raises(DataError, match=r"long: IDX file has 2 bytes beyond"):
        read_idx_array(tmp / "long")


def test_wrong_dims_count_mismatch_and_bad_labels(tiny):
    tmp, images, labels = tiny
    img = write_idx(tmp / "img", images)
    lab = write_idx(tmp / "lab", labels)
    with pytest.raises(DataError, match=r"lab: expected uint8 images of shape \(N, H, W\)"):
        read_idx(lab, lab)
    with pytest.raises(DataError, match=r"short-lab holds 4 labels but .*img holds 5 images"):
        read_idx(img, write_idx(tmp / "short-lab", labels[:4]))
    with pytest.raises(DataError, match=r"label 9 is outside the 3 class names"):
        read_idx(img, lab, class_names=["a", "b", "c"])


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere-idx3-ubyte: IDX file not found"):
        read_idx(tmp_path / "nothere-idx3-ubyte")


def test_real_mnist_train():
    folder = shared("mnist")
    data = read_idx(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    assert data.images.shape == (60000, 1, 28, 28)
    # the well-known per-digit counts of the MNIST training set
    expected = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(data.labels).tolist() == expected
    assert data.images.min() == 0 and data.images.max() == 255


def test_real_fashion_mnist_test():
    folder = shared("fashion-mnist")
    data = read_idx(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    assert data.images.shape == (10000, 1, 28, 28)
    assert np.bincount(data.labels).tolist() == [1000] * 10

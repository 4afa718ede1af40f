"""CIFAR-10/100 pickle readers, on tiny fixtures written in the official layout."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from reconad.data import DataError
from reconad.data.cifar import read_cifar10_pickles, read_cifar100_pickles

C10_NAMES = [
    name.encode() for name in "airplane automobile bird cat deer dog frog horse ship truck".split()
]


def dump(path: Path, obj) -> None:
    # protocol 2 with bytes keys, the closest to the official Python 2 files
    path.write_bytes(pickle.dumps(obj, protocol=2))


def batch(rng, n: int, label_key: bytes = b"labels", n_classes: int = 10) -> dict:
    return {
        b"batch_label": b"fixture",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, n_classes, n).tolist(),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


@pytest.fixture
def cifar10_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        dump(folder / f"data_batch_{i}", batch(rng, 4))
    dump(folder / "test_batch", batch(rng, 3))
    dump(folder / "batches.meta", {b"label_names": C10_NAMES, b"num_vis": 3072})
    return folder


@pytest.fixture
def cifar100_dir(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 6), ("test", 2)):
        b = batch(rng, n, b"fine_labels", 100)
        b[b"coarse_labels"] = rng.integers(0, 20, n).tolist()
        dump(folder / split, b)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    dump(folder / "meta", meta)
    return folder


def test_cifar10_train_and_test(cifar10_dir):
    train = read_cifar10_pickles(cifar10_dir.parent, "train")
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.class_names[0] == "airplane" and len(train.class_names) == 10
    first = pickle.loads((cifar10_dir / "data_batch_1").read_bytes(), encoding="bytes")
    # rows are the R, G and B planes, each 32x32 row-major
    np.testing.assert_array_equal(train.images[0, 1], first[b"data"][0, 1024:2048].reshape(32, 32))
    np.testing.assert_array_equal(train.labels[:4], first[b"labels"])
    test = read_cifar10_pickles(cifar10_dir, "test")  # the batch folder itself also works
    assert len(test) == 3 and test.meta["split"] == "test"


def test_cifar100_coarse_and_fine(cifar100_dir):
    coarse = read_cifar100_pickles(cifar100_dir.parent, "train")
    assert coarse.images.shape == (6, 3, 32, 32)
    assert len(coarse.class_names) == 20 and coarse.class_names[3] == "coarse3"
    assert coarse.labels.max() < 20
    fine = read_cifar100_pickles(cifar100_dir, "test", coarse=False)
    assert len(fine.class_names) == 100 and len(fine) == 2


def test_official_numpy_core_pickle_loads_without_warning(cifar10_dir):
    # the official files (numpy 1, Python 2) name numpy.core.multiarray._reconstruct
    path = cifar10_dir / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_cifar10_pickles(cifar10_dir, "test")) == 3


def test_pickle_with_code_is_refused(cifar10_dir):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    dump(cifar10_dir / "test_batch", {b"data": Evil()})
    with pytest.raises(
        DataError, match=r"test_batch: not a readable CIFAR pickle.*refusing to load"
    ):
        read_cifar10_pickles(cifar10_dir, "test")


def test_missing_key(cifar10_dir):
    dump(cifar10_dir / "test_batch", {b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DataError, match=r"test_batch: missing key 'labels'"):
        read_cifar10_pickles(cifar10_dir, "test")


def test_wrong_shape(cifar10_dir):
    b = {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}
    dump(cifar10_dir / "data_batch_3", b)
    with pytest.raises(DataError, match=r"data_batch_3: 'data' must be uint8 of shape \(N, 3072\)"):
        read_cifar10_pickles(cifar10_dir, "train")


def test_label_count_and_range(cifar10_dir):
    dump(cifar10_dir / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    with pytest.raises(DataError, match=r"'labels' must be 2 integers"):
        read_cifar10_pickles(cifar10_dir, "test")
    dump(cifar10_dir / "test_batch", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]})
    with pytest.raises(DataError, match=r"labels outside 0..9"):
        read_cifar10_pickles(cifar10_dir, "test")


def test_missing_and_garbage_files(cifar10_dir, tmp_path):
    (cifar10_dir / "data_batch_5").unlink()
    with pytest.raises(DataError, match=r"data_batch_5: CIFAR batch file not found"):
        read_cifar10_pickles(cifar10_dir, "train")
    (cifar10_dir / "batches.meta").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"batches.meta: not a readable CIFAR pickle"):
        read_cifar10_pickles(cifar10_dir, "test")
    with pytest.raises(DataError, match=r"nowhere: CIFAR folder not found"):
        read_cifar100_pickles(tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match="split must be"):
        read_cifar10_pickles(cifar10_dir, "val")

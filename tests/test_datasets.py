"""Data sets by name: root resolution, layout discovery, errors, and the real shared copies."""

from __future__ import annotations

import gzip
import pickle
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reconad.data import DATASETS, DataError, load_dataset, resolve_data_root

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR10 = DATASETS["cifar10"]["classes"]


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is missing (expected ../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No env settings leak in, the cache is private, and downloads hit a closed local port."""
    monkeypatch.delenv("RECONAD_DATA", raising=False)
    monkeypatch.setenv("RECONAD_CACHE", str(tmp_path / "cache"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RECONAD_MIRROR", f"http://127.0.0.1:{port}/")


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)


def write_mnist(folder: Path, gz: bool, n: int = 4) -> None:
    for prefix in ("train", "t10k"):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte{'.gz' * gz}", np.zeros((n, 28, 28), np.uint8), gz
        )
        write_idx(
            folder / f"{prefix}-labels-idx1-ubyte{'.gz' * gz}", np.arange(n, dtype=np.uint8), gz
        )


def write_cifar10(folder: Path) -> None:
    folder.mkdir(parents=True)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
    for name in ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [c.encode() for c in CIFAR10]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_resolve_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "reconad"
    monkeypatch.setenv("RECONAD_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet", "train", root=tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        load_dataset("mnist", "val", root=tmp_path)


def test_missing_without_download(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", "test", root=tmp_path, download=False)
    message = str(err.value)
    assert f"not found in the data root {tmp_path}" in message
    for place in ("cifar-10-batches-py", "cifar10-jpg.tar.gz", "cifar10/"):
        assert place in message
    assert "download=False" in message and "RECONAD_DATA" in message


def test_missing_and_offline(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", "train", root=tmp_path)
    message = str(err.value)
    assert "fashion-mnist" in message and "FashionMNIST/raw" in message
    assert "the download failed" in message and "seems to be offline" in message
    assert "RECONAD_DATA" in message


def test_mnist_layouts(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", gz=False)  # torchvision's layout, unpacked
    data = load_dataset("mnist", "test", root=tmp_path)
    assert data.images.shape == (4, 1, 28, 28) and data.class_names[3] == "3"
    assert data.meta["dataset"] == "mnist" and data.meta["split"] == "test"
    write_mnist(tmp_path / "fashion-mnist", gz=True)
    fashion = load_dataset("fmnist", "train", root=tmp_path)
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"


def test_env_root(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist", gz=True)
    monkeypatch.setenv("RECONAD_DATA", str(tmp_path))
    assert len(load_dataset("mnist", "train")) == 4


def test_cifar10_layout_order(tmp_path):
    for c in CIFAR10:
        folder = tmp_path / "cifar10" / "test" / c
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "0000.png")
    folders = load_dataset("cifar10", "test", root=tmp_path)
    assert len(folders) == 10 and folders.labels.tolist() == list(range(10))
    write_cifar10(tmp_path / "cifar-10-batches-py")  # the official pickles come first
    pickles = load_dataset("cifar10", "test", root=tmp_path)
    assert pickles.labels.tolist() == [1, 2] and pickles.class_names == CIFAR10


def test_cifar10_folder_copy_with_other_classes(tmp_path):
    folder = tmp_path / "cifar10" / "train" / "kitten"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "0.png")
    with pytest.raises(DataError, match=r"expected the CIFAR-10 classes"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_cifar100_coarse(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    batch = {
        b"data": np.zeros((3, 3072), np.uint8),
        b"fine_labels": [5, 50, 99],
        b"coarse_labels": [0, 10, 19],
    }
    (folder / "train").write_bytes(pickle.dumps(batch, protocol=2))
    meta = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [c.encode() for c in DATASETS["cifar100"]["classes"]],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    data = load_dataset("cifar-100", "train", root=tmp_path)
    assert data.labels.tolist() == [0, 10, 19] and len(data.class_names) == 20


def test_datasets_table():
    for name, info in DATASETS.items():
        assert info["channels"] in (1, 3) and len(info["size"]) == 2, name
    assert [len(DATASETS[n]["classes"]) for n in ("mnist", "fmnist", "cifar10", "cifar100")] == [
        10,
        10,
        10,
        20,
    ]


def test_real_mnist_train():
    root = shared("mnist")
    data = load_dataset("mnist", "train", root=root, download=False)
    assert data.images.shape == (60000, 1, 28, 28)
    counts = np.bincount(data.labels, minlength=10)
    assert counts.sum() == 60000 and counts.min() > 5000 and counts.max() < 7000
    assert counts[1] == counts.max()  # ones are the most common digit (6742)


def test_real_fashion_mnist_names():
    root = shared("fashion-mnist")
    data = load_dataset("fmnist", "test", root=root, download=False)
    assert data.images.shape == (10000, 1, 28, 28) and data.class_names[9] == "Ankle boot"
    assert np.bincount(data.labels).tolist() == [1000] * 10


def test_real_cifar10_jpeg_copy():
    root = shared("cifar10-jpg.tar.gz")
    data = load_dataset("cifar10", "test", root=root, download=False)
    assert data.images.shape == (10000, 3, 32, 32) and data.class_names == CIFAR10
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert data.meta["source"].endswith("cifar10-jpg.tar.gz")

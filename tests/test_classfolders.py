"""Class-folder trees, read from folders and straight from tar archives, and their cache."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from reconad.data import DataError, classfolders
from reconad.data.classfolders import read_class_folders
from tests.conftest import save, shared

pytestmark = pytest.mark.usefixtures("private_cache")


CLASSES = ["cat", "airplane", "dog"]  # written unsorted; read alphabetically


@pytest.fixture
def class_tree(tmp_path) -> Path:
    root = tmp_path / "tree"
    for split, n in (("train", 3), ("test", 2)):
        for c in CLASSES:
            for i in range(n):
                save(root / split / c / f"{i:04d}.png", 6, 5)
    return root


def make_tar(src: Path, archive: Path, top: str | None = None) -> Path:
    mode = "w" if archive.suffix == ".tar" else "w:gz"
    with tarfile.open(archive, mode) as tf:
        for entry in sorted(src.iterdir()):
            tf.add(entry, arcname=f"{top}/{entry.name}" if top else entry.name)
    return archive


def test_class_folders_directory(class_tree):
    data = read_class_folders(class_tree, "train")
    assert data.class_names == ["airplane", "cat", "dog"]
    assert data.images.shape == (9, 3, 6, 5)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.paths[3].endswith(os.path.join("train", "cat", "0000.png"))


def test_class_folders_errors(class_tree, tmp_path):
    with pytest.raises(DataError, match=r"val: class-folder root not found"):
        read_class_folders(class_tree, "val")
    (class_tree / "test" / "emu").mkdir()
    with pytest.raises(DataError, match=r"emu: class folder has no image files"):
        read_class_folders(class_tree, "test")
    with pytest.raises(DataError, match=r"test: class folder has no image files.*pass split="):
        read_class_folders(class_tree)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match=r"flat: no class folders found"):
        read_class_folders(tmp_path / "flat")


@pytest.mark.parametrize(
    ("name", "top"), [("t.tar.gz", None), ("t.tgz", "wrapped"), ("t.tar", None)]
)
def test_class_archive_matches_directory(class_tree, tmp_path, name, top):
    archive = make_tar(class_tree, tmp_path / name, top)
    from_dir = read_class_folders(class_tree, "test")
    from_tar = read_class_folders(archive, "test")
    np.testing.assert_array_equal(from_tar.images, from_dir.images)
    np.testing.assert_array_equal(from_tar.labels, from_dir.labels)
    assert from_tar.class_names == from_dir.class_names
    inner = f"{top}/test/cat/0001.png" if top else "test/cat/0001.png"
    assert from_tar.paths[3] == str(archive / inner)


def test_class_archive_cache(class_tree, tmp_path, monkeypatch):
    archive = make_tar(class_tree, tmp_path / "t.tar.gz")
    first = read_class_folders(archive, "train")
    cache_file = Path(first.meta["cache_file"])
    assert not first.meta["cache_hit"] and cache_file.is_file()
    assert cache_file.parent == tmp_path / "cache"
    assert [p.name for p in cache_file.parent.iterdir()] == [cache_file.name]  # no temp left

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as m:
        m.setattr(classfolders, "_decode_all", no_decoding)
        second = read_class_folders(archive, "train")
    assert second.meta["cache_hit"] and second.meta["cache_file"] == str(cache_file)
    np.testing.assert_array_equal(second.images, first.images)
    assert second.paths == first.paths and second.class_names == first.class_names
    assert second.orig_sizes == first.orig_sizes

    other = read_class_folders(archive, "train", size=(3, 3))  # other arguments, other file
    assert not other.meta["cache_hit"] and other.meta["cache_file"] != str(cache_file)

    cache_file.write_bytes(b"garbage")  # corrupt: ignored and rebuilt
    rebuilt = read_class_folders(archive, "train")
    assert not rebuilt.meta["cache_hit"]
    assert read_class_folders(archive, "train").meta["cache_hit"]

    os.utime(archive, ns=(0, 10**18))  # a changed archive gets a new key
    assert not read_class_folders(archive, "train").meta["cache_hit"]
    assert read_class_folders(archive, "train", cache=False).meta["cache_file"] is None


def test_class_archive_errors(class_tree, tmp_path):
    with pytest.raises(DataError, match=r"missing.tar.gz: class-folder archive not found"):
        read_class_folders(tmp_path / "missing.tar.gz", "train")

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        tf.add(class_tree / "train" / "cat" / "0000.png", arcname="../train/cat/0000.png")
    with pytest.raises(DataError, match=r"evil.tar.gz: unsafe member name '../train"):
        read_class_folders(evil, "train")

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tf:
        tf.add(class_tree / "train" / "cat", arcname="train/cat")
        info = tarfile.TarInfo("train/emu")
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
    with pytest.raises(DataError, match=r"empty.tar.gz: class folder 'train/emu' has no image"):
        read_class_folders(empty, "train")
    with pytest.raises(DataError, match=r"empty.tar.gz: no folder 'test'"):
        read_class_folders(empty, "test")

    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tf:
        tf.add(class_tree / "train" / "dog", arcname="train/dog")
        data = b"\xff\xd8\xff\xe0 truncated jpeg"
        info = tarfile.TarInfo("train/cat/0000.jpg")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match=r"broken.tar/train/cat/0000.jpg: "):
        read_class_folders(broken, "train")

    (tmp_path / "cut.tar.gz").write_bytes(
        (make_tar(class_tree, tmp_path / "x.tar.gz")).read_bytes()[:300]
    )
    with pytest.raises(DataError, match=r"cut.tar.gz: unreadable or truncated archive"):
        read_class_folders(tmp_path / "cut.tar.gz", "train", cache=False)


def test_real_cifar10_jpeg_archive_and_cache(monkeypatch):
    archive = shared("cifar10-jpg.tar.gz")
    data = read_class_folders(archive, "test")
    assert data.images.shape == (10000, 3, 32, 32)
    assert data.class_names == [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert data.paths[0] == str(archive / "test/airplane/0000.jpg")  # no top-level folder
    assert not data.meta["cache_hit"]
    monkeypatch.setattr(classfolders, "_decode_all", None)  # decoding again would fail
    again = read_class_folders(archive, "test")
    assert again.meta["cache_hit"] and again.meta["cache_file"] == data.meta["cache_file"]
    np.testing.assert_array_equal(again.images, data.images)

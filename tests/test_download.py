"""Downloads over a local http.server on 127.0.0.1 (no other network), and safe extraction."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from reconad.data import DataError, load_dataset
from reconad.data import download as dl
from reconad.data.download import (
    KNOWN_FILES,
    RemoteFile,
    download_dataset,
    download_file,
    extract_tar,
    file_md5,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (port chosen by the OS); yields (folder, url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    monkeypatch.delenv("RECONAD_MIRROR", raising=False)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_verifies_and_renames(served, tmp_path):
    folder, url = served
    payload = bytes(range(256)) * 5000
    (folder / "blob.bin").write_bytes(payload)
    dest = tmp_path / "out" / "blob.bin"
    assert download_file(url + "blob.bin", dest, md5(payload)) == dest
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]  # no temp file left
    # a destination folder takes the URL's file name
    assert download_file(url + "blob.bin", tmp_path, None) == tmp_path / "blob.bin"


def test_md5_mismatch_deletes_download(served, tmp_path):
    folder, url = served
    (folder / "blob.bin").write_bytes(b"tampered")
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(DataError, match=r"blob.bin: md5 mismatch \(expected 0{32}, got"):
        download_file(url + "blob.bin", dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []


def test_http_error(served, tmp_path):
    _, url = served
    with pytest.raises(DataError, match=r"missing.gz: the server answered HTTP 404"):
        download_file(url + "missing.gz", tmp_path / "missing.gz", None)
    assert list(tmp_path.glob("*missing*")) == []


def test_offline(closed_port_url, tmp_path):
    dest = tmp_path / "data" / "train-images-idx3-ubyte.gz"
    with pytest.raises(DataError, match=r"seems to be offline.*put it at .*data/train-images"):
        download_file(closed_port_url + "train-images-idx3-ubyte.gz", dest, None)
    assert list(dest.parent.iterdir()) == []


def test_existing_verified_file_is_kept(closed_port_url, tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"done")
    assert download_file(closed_port_url + "f.bin", dest, md5(b"done")) == dest  # no network


def test_mirror_env_replaces_base(served, tmp_path, monkeypatch):
    folder, url = served
    (folder / "cifar-10-python.tar.gz").write_bytes(b"abc")
    monkeypatch.setenv("RECONAD_MIRROR", url)
    official = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert dl.mirror_url(official) == url + "cifar-10-python.tar.gz"
    assert download_file(official, tmp_path, md5(b"abc")).read_bytes() == b"abc"


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_extract_tar(tmp_path):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        add_bytes(tf, "pkg/x.txt", b"x")
        add_bytes(tf, "pkg/sub/y.txt", b"y")
    dest = tmp_path / "dest"
    assert extract_tar(archive, dest) == [dest / "pkg"]
    assert (dest / "pkg" / "sub" / "y.txt").read_bytes() == b"y"
    assert [p.name for p in dest.iterdir()] == ["pkg"]  # the temporary folder is gone
    with pytest.raises(DataError, match=r"pkg already exists"):
        extract_tar(archive, dest)


@pytest.mark.parametrize("name", ["../escape.txt", "pkg/../../escape.txt", "/tmp/abs.txt"])
def test_extract_tar_rejects_unsafe_members(tmp_path, name):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        add_bytes(tf, "pkg/ok.txt", b"ok")
        add_bytes(tf, name, b"gotcha")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=r"evil.tar: unsafe member"):
        extract_tar(archive, dest)
    assert not (tmp_path / "escape.txt").exists() and list(dest.iterdir()) == []


def test_extract_tar_rejects_links(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("pkg/passwd")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match=r"'pkg/passwd' is a link or special file"):
        extract_tar(archive, tmp_path / "dest")


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.tobytes())


def test_download_dataset_then_load(served, tmp_path, monkeypatch):
    """End to end: nothing in the root, so load_dataset fetches the (fixture) files."""
    folder, url = served
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": idx_gz(rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte.gz": idx_gz(np.arange(6, dtype=np.uint8)),
    }
    remotes = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        remotes.append(RemoteFile(f"https://example.invalid/mnist/{name}", md5(data), "mnist"))
    monkeypatch.setitem(KNOWN_FILES, "mnist", remotes)
    monkeypatch.setenv("RECONAD_MIRROR", url)
    root = tmp_path / "root"
    data = load_dataset("mnist", "train", root=root, download=True)
    assert data.images.shape == (6, 1, 28, 28) and data.labels.tolist() == list(range(6))
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(files)


def test_download_dataset_extracts_cifar(served, tmp_path, monkeypatch):
    folder, url = served
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 9]}
        add_bytes(tf, "cifar-10-batches-py/test_batch", pickle.dumps(batch, protocol=2))
        meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
        add_bytes(tf, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
    (folder / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    official = KNOWN_FILES["cifar10"][0]
    monkeypatch.setitem(
        KNOWN_FILES, "cifar10", [RemoteFile(official.url, md5(buf.getvalue()), extract=True)]
    )
    root = tmp_path / "root"
    download_dataset("cifar10", root, base_url=url)
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert load_dataset("cifar10", "test", root=root, download=False).labels.tolist() == [0, 9]


def test_download_dataset_offline_lists_expected_files(closed_port_url, tmp_path):
    with pytest.raises(DataError) as err:
        download_dataset("mnist", tmp_path, base_url=closed_port_url)
    message = str(err.value)
    assert "seems to be offline" in message
    for remote in KNOWN_FILES["mnist"]:
        assert str(tmp_path / "mnist" / remote.filename) in message and remote.md5 in message
    with pytest.raises(ValueError, match="no known files"):
        download_dataset("imagenet", tmp_path)


def test_known_files_table():
    assert set(KNOWN_FILES) == {"mnist", "fmnist", "cifar10", "cifar100"}
    for remotes in KNOWN_FILES.values():
        for r in remotes:
            assert len(r.md5) == 32 and int(r.md5, 16) >= 0
            assert r.url.startswith(("https://", "http://"))
    assert all(
        r.url.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")
        for r in KNOWN_FILES["mnist"]
    )
    assert KNOWN_FILES["cifar10"][0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert KNOWN_FILES["cifar100"][0].md5 == "eb9058c3a382ffc7106e4002c42a8d85"


@pytest.mark.parametrize(("name", "folder"), [("mnist", "mnist"), ("fmnist", "fashion-mnist")])
def test_local_copies_hold_the_official_content(name, folder):
    """The shared .gz files were recompressed (their md5s differ from the official .gz),
    but what they unpack to is byte-identical to the official IDX files."""
    local = SHARED_DATA / folder
    if not local.is_dir():
        pytest.skip(f"real data {local} is missing (expected ../shared/data beside the repo)")
    for remote in KNOWN_FILES[name]:
        path = local / remote.filename
        assert file_md5(path) != remote.md5  # recompressed copies
        assert md5(gzip.decompress(path.read_bytes())) == remote.raw_md5

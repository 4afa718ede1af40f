"""Download the official archives of the benchmark data sets, with md5 checks.

Files are streamed to a temporary name in the destination folder and renamed into place
only once their md5 matches, so an interrupted or corrupted download never leaves a file
that looks complete. Tar archives are unpacked the same way (into a temporary folder, then
renamed), refusing members that would land outside the destination.

``RECONAD_MIRROR`` (or the ``base_url`` argument) replaces the folder part of every URL:
``RECONAD_MIRROR=http://host/data/`` fetches ``http://host/data/train-images-idx3-ubyte.gz``.
That serves a local mirror on machines without internet access, and the tests.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from reconad.data.imageset import DataError

__all__ = [
    "KNOWN_FILES",
    "RemoteFile",
    "download_dataset",
    "download_file",
    "extract_tar",
    "file_md5",
    "mirror_url",
]

CHUNK = 1 << 20
TIMEOUT_S = 30


@dataclass(frozen=True)
class RemoteFile:
    """One official file of a data set.

    Attributes:
        url: where the publisher (or the mirror torchvision uses) serves it.
        md5: md5 of the file as served.
        subdir: folder under the data root it is saved in ("" for the root itself).
        extract: True for a tar archive that is unpacked after download.
        raw_md5: md5 of the uncompressed content of a ``.gz`` file; a recompressed copy
            has another ``md5`` but the same ``raw_md5``.
    """

    url: str
    md5: str
    subdir: str = ""
    extract: bool = False
    raw_md5: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# md5s of the .gz files as torchvision lists them; raw_md5s of the unpacked IDX files.
KNOWN_FILES: dict[str, list[RemoteFile]] = {
    "mnist": [
        RemoteFile(
            _MNIST + "train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "mnist",
            raw_md5="6bbc9ace898e44ae57da46a324031adb",
        ),
        RemoteFile(
            _MNIST + "train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "mnist",
            raw_md5="a25bea736e30d166cdddb491f175f624",
        ),
        RemoteFile(
            _MNIST + "t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
            "mnist",
            raw_md5="2646ac647ad5339dbf082846283269ea",
        ),
        RemoteFile(
            _MNIST + "t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
            "mnist",
            raw_md5="27ae3e4e09519cfbb04c329615203637",
        ),
    ],
    "fmnist": [
        RemoteFile(
            _FMNIST + "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "fashion-mnist",
            raw_md5="f4a8712d7a061bf5bd6d2ca38dc4d50a",
        ),
        RemoteFile(
            _FMNIST + "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
            "fashion-mnist",
            raw_md5="9018921c3c673c538a1fc5bad174d6f9",
        ),
        RemoteFile(
            _FMNIST + "t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79",
            "fashion-mnist",
            raw_md5="8181f5470baa50b63fa0f6fddb340f0a",
        ),
        RemoteFile(
            _FMNIST + "t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310",
            "fashion-mnist",
            raw_md5="15d484375f8d13e6eb1aabb0c3f46965",
        ),
    ],
    "cifar10": [
        RemoteFile(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            extract=True,
        ),
    ],
    "cifar100": [
        RemoteFile(
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
            extract=True,
        ),
    ],
}


def file_md5(path: str | Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_url(url: str, base_url: str | None = None) -> str:
    """``url`` with its folder replaced by ``base_url`` or ``$RECONAD_MIRROR`` when set."""
    base = base_url or os.environ.get("RECONAD_MIRROR")
    if not base:
        return url
    return base.rstrip("/") + "/" + url.rsplit("/", 1)[-1]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def download_file(url: str, dest: str | Path, md5: str | None, base_url: str | None = None) -> Path:
    """Download ``url`` to ``dest`` and check its md5.

    A ``dest`` that already exists with the right md5 is kept as it is.

    Args:
        url: the official URL (its folder is replaced by ``base_url``/``$RECONAD_MIRROR``).
        dest: the file to write, or an existing folder to write the URL's file name into.
        md5: expected hex md5, or None to skip the check.
        base_url: mirror folder to fetch from instead of the URL's own.

    Returns:
        The path of the complete, verified file.

    Raises:
        DataError: the server is unreachable (the message says the machine seems offline
            and where to put the file by hand), answers with an error, or the md5 differs
            (the partial file is deleted).
    """
    url = mirror_url(url, base_url)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / url.rsplit("/", 1)[-1]
    if dest.is_file() and (md5 is None or file_md5(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with _progress() as progress:
                task = progress.add_task(f"Downloading {dest.name}", total=total)
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.advance(task, len(chunk))
        if md5 is not None and digest.hexdigest() != md5:
            raise DataError(
                f"{url}: md5 mismatch (expected {md5}, got {digest.hexdigest()}); the "
                "download was deleted. Try again, or fetch the file by hand and put it at "
                f"{dest}"
            )
        os.replace(tmp, dest)
        return dest
    except urllib.error.HTTPError as err:
        raise DataError(
            f"{url}: the server answered HTTP {err.code} ({err.reason}); fetch the file by "
            f"hand and put it at {dest}"
        ) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise DataError(
            f"could not download {url} ({reason}): this machine seems to be offline. "
            f"Download {dest.name} on a machine with internet access and put it at {dest}"
        ) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _safe_members(archive: Path, tf: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """All members, refusing absolute paths, ``..``, links and device files."""
    members = tf.getmembers()
    for m in members:
        parts = PurePosixPath(m.name).parts
        if m.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise DataError(f"{archive}: unsafe member {m.name!r} (absolute path or '..')")
        if not (m.isfile() or m.isdir()):
            raise DataError(f"{archive}: member {m.name!r} is a link or special file")
    return members


def extract_tar(archive: str | Path, dest: str | Path) -> list[Path]:
    """Unpack a tar archive (any compression) into ``dest`` safely and atomically.

    Members are unpacked into a temporary folder inside ``dest`` and each top-level entry
    is then renamed into ``dest``, so an interrupted extraction leaves no partial data
    folder behind.

    Args:
        archive: the ``.tar``, ``.tar.gz`` or ``.tgz`` file.
        dest: the folder to unpack into (created if needed).

    Returns:
        The top-level entries created in ``dest``.

    Raises:
        DataError: the archive is unreadable, has an absolute, ``..``, link or device
            member, or a top-level entry already exists in ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = _safe_members(archive, tf)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(tmp, members=members, **kwargs)
        created = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if target.exists():
                raise DataError(f"{target} already exists; remove it to unpack {archive} again")
            os.replace(entry, target)
            created.append(target)
        return created
    except (tarfile.TarError, EOFError) as err:
        raise DataError(f"{archive}: unreadable or truncated tar archive ({err})") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_dataset(name: str, root: str | Path, base_url: str | None = None) -> list[Path]:
    """Download (and unpack) every file of a known data set into ``root``.

    Args:
        name: a key of ``KNOWN_FILES`` (``"mnist"``, ``"fmnist"``, ``"cifar10"``, ``"cifar100"``).
        root: the data root; each file goes to ``root/<subdir>/``.
        base_url: mirror folder to fetch from (else ``$RECONAD_MIRROR``, else the official URL).

    Returns:
        The downloaded files.

    Raises:
        DataError: a download or an extraction failed; the message lists every expected
            file, its URL and where to put it.
    """
    if name not in KNOWN_FILES:
        raise ValueError(f"no known files for data set {name!r}; known: {sorted(KNOWN_FILES)}")
    root = Path(root)
    done = []
    for remote in KNOWN_FILES[name]:
        folder = root / remote.subdir
        try:
            path = download_file(remote.url, folder / remote.filename, remote.md5, base_url)
            if remote.extract:
                extract_tar(path, folder)
        except DataError as err:
            expected = "\n".join(
                f"  {root / f.subdir / f.filename}  (md5 {f.md5}, from {f.url})"
                for f in KNOWN_FILES[name]
            )
            if any(f.extract for f in KNOWN_FILES[name]):
                expected += "\n(tar archives are unpacked in the folder they are in)"
            raise DataError(f"{err}\nThe {name} data set needs these files:\n{expected}") from err
        done.append(path)
    return done

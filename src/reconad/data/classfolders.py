"""Class-folder trees, ``root/[split/]<class>/<image>``, read from a folder or straight from a
tar archive, with the decoded arrays of an archive cached on disk.

Pixel conventions, file-name rules and the complete decoding check are those of
:mod:`reconad.data.folders`, whose decoders this module uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from reconad.data.folders import (
    Size,
    _check_channels,
    _check_size,
    _decode_all,
    _existing_dir,
    _is_image_name,
    _subdirs,
    image_files,
    read_image_files,
)
from reconad.data.imageset import DataError, ImageSet

__all__ = ["cache_dir", "read_class_folders"]

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CACHE_VERSION = 1  # bump when the cached arrays' layout or the decoding changes


def cache_dir() -> Path:
    """Where decoded archives are cached: ``$RECONAD_CACHE``, else ``~/.cache/reconad/cache``."""
    env = os.environ.get("RECONAD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reconad" / "cache"


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def read_class_folders(
    root: str | Path,
    split: str | None = None,
    size: int | Sequence[int] | None = None,
    channels: int | None = None,
    cache: bool = True,
) -> ImageSet:
    """Read a ``root/[split/]<class>/<image>`` tree from a folder or a tar archive.

    Class names are the class folder names sorted alphabetically, and label ``i`` is
    ``class_names[i]``. For CIFAR-10 class folders this is also the official label order
    (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck happens to be
    alphabetical). Images within a class are sorted by file name. Only image files exactly
    at ``[split/]<class>/`` count.

    A ``.tar.gz``, ``.tgz`` or ``.tar`` archive is read directly, without unpacking; a
    single top-level folder wrapping the tree is skipped. Decoding tens of thousands of
    small JPEGs takes seconds, so the decoded arrays of an archive are cached as an
    uncompressed ``.npz`` in ``cache_dir()``, keyed by the archive's absolute path, byte size
    and modification time and by ``split``, ``size`` and ``channels``. An unreadable cache
    file is ignored and rebuilt. (Folders are not cached: their modification time does not
    change when a file deep inside them does.)

    Args:
        root: the folder or archive.
        split: optional sub-folder such as ``"train"`` or ``"test"``.
        size: ``(h, w)`` to resize to; needed when the images differ in size.
        channels: None keeps the files' channels; 1 or 3 converts.
        cache: False to neither read nor write the cache.

    Returns:
        ImageSet with labels and class names; ``meta`` records the cache file and whether it
        was used (``cache_hit``).

    Raises:
        DataError: root or split is missing, there are no class folders, a class folder is
            empty, an archive member has an unsafe name, or an image is unusable.
    """
    _check_channels(channels)
    size = _check_size(size)
    root = Path(root)
    if _is_archive(root):
        if not root.is_file():
            raise DataError(f"{root}: class-folder archive not found")
        return _read_class_archive(root, split, size, channels, cache)
    base = _existing_dir(root / split if split else root, "class-folder root")
    classes = _subdirs(base)
    if not classes:
        raise DataError(f"{base}: no class folders found (expected <class>/<image files>)")
    files, labels = [], []
    for label, folder in enumerate(classes):
        found = image_files(folder, "class folder")
        files += found
        labels += [label] * len(found)
    result = read_image_files(
        files, size=size, channels=channels, labels=labels, class_names=[c.name for c in classes]
    )
    result.meta.update(source=str(root), split=split)
    return result


def _member_parts(archive: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    """The member's path components, refusing absolute paths and ``..``."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{archive}: unsafe member name {name!r} (absolute or with '..')")
    return tuple(p for p in parts if p != ".")


def _archive_layout(
    archive: Path, members: list[tarfile.TarInfo], split: str | None
) -> tuple[list[str], list[tuple[int, str, tarfile.TarInfo]]]:
    """Class names and the selected ``(label, display name, member)`` of a class archive."""
    entries = [(_member_parts(archive, m), m) for m in members]
    entries = [(p, m) for p, m in entries if p]
    depth = 3 if split else 2  # [split/]class/file
    tops = {p[0] for p, _ in entries}
    if len(tops) == 1 and all(len(p) > depth for p, m in entries if m.isfile()):
        top = next(iter(tops))
        if split is None or top != split:  # one wrapping folder, e.g. cifar10/train/...
            entries = [(p[1:], m) for p, m in entries if len(p) > 1]
    prefix = (split,) if split else ()
    within = [
        (p[len(prefix) :], m)
        for p, m in entries
        if p[: len(prefix)] == prefix and len(p) > len(prefix)
    ]
    if not within:
        raise DataError(f"{archive}: no folder '{split}' (or it is empty) in the archive")
    class_dirs = {p[0] for p, m in within if len(p) > 1 or m.isdir()}
    files = [(p, m) for p, m in within if len(p) == 2 and m.isfile() and _is_image_name(p[1])]
    class_names = sorted(class_dirs)
    if not class_names:
        raise DataError(f"{archive}: no class folders under '{split or '.'}'")
    counts = {c: 0 for c in class_names}
    for p, _ in files:
        counts[p[0]] += 1
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        where = "/".join([*prefix, empty[0]])
        nested = sorted({p[1] for p, _ in within if len(p) > 2 and p[0] == empty[0]})
        hint = f"; it holds folders {nested[:5]} (a split? pass split=...)" if nested else ""
        raise DataError(f"{archive}: class folder '{where}' has no image files{hint}")
    index = {c: i for i, c in enumerate(class_names)}
    selected = sorted(((index[p[0]], m.name, m) for p, m in files), key=lambda e: e[:2])
    return class_names, selected


def _cache_file(archive: Path, split: str | None, size: Size | None, channels: int | None) -> Path:
    stat = archive.stat()
    key = {
        "version": CACHE_VERSION,
        "archive": str(archive.resolve()),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "split": split,
        "size": size,
        "channels": channels,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{archive.name}-{split or 'all'}-{digest}.npz"


def _load_cache(path: Path, archive: Path) -> ImageSet | None:
    """The cached set, or None when the file is absent or unusable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return ImageSet(
                images=z["images"],
                labels=z["labels"],
                class_names=[str(c) for c in z["class_names"]],
                paths=[str(archive / str(m)) for m in z["members"]],
                orig_sizes=[(int(h), int(w)) for h, w in z["orig_sizes"]],
            )
    except Exception:  # a corrupt or stale cache is never fatal: decode again
        return None


def _save_cache(path: Path, data: ImageSet, members: list[str]) -> None:
    """Write the cache atomically (temporary name, then rename); warn if that fails."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                images=data.images,
                labels=data.labels,
                class_names=np.array(data.class_names, dtype=str),
                members=np.array(members, dtype=str),
                orig_sizes=np.array(data.orig_sizes, dtype=np.int64).reshape(-1, 2),
            )
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(f"could not write the image cache {path}: {err}", stacklevel=3)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _read_class_archive(
    archive: Path, split: str | None, size: Size | None, channels: int | None, cache: bool
) -> ImageSet:
    cached_at = _cache_file(archive, split, size, channels) if cache else None
    data = _load_cache(cached_at, archive) if cached_at else None
    hit = data is not None
    if data is None:
        try:
            with tarfile.open(archive, "r:*") as tf:
                class_names, selected = _archive_layout(archive, tf.getmembers(), split)
                wanted = {id(m) for _, _, m in selected}
                blobs = {}
                for m in tf.getmembers():  # archive order: one forward pass through the stream
                    if id(m) in wanted:
                        blobs[id(m)] = tf.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"{archive}: unreadable or truncated archive ({err})") from err
        members = [name for _, name, _ in selected]
        paths = [str(archive / name) for name in members]
        images, orig_sizes = _decode_all(
            [(path, blobs[id(m)]) for path, (_, _, m) in zip(paths, selected, strict=True)],
            size,
            channels,
        )
        data = ImageSet(
            images=images,
            labels=[label for label, _, _ in selected],
            class_names=class_names,
            paths=paths,
            orig_sizes=orig_sizes,
        )
        if cached_at is not None:
            _save_cache(cached_at, data, members)
    data.meta.update(
        source=str(archive),
        split=split,
        cache_file=None if cached_at is None else str(cached_at),
        cache_hit=hit,
    )
    return data

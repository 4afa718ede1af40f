"""Readers for images stored as files: one file, a flat folder, class folders, MVTec AD.

Every reader decodes with Pillow and checks each image completely (``img.load()``), so a
truncated JPEG or PNG fails here with its file name instead of turning into a grey stripe
in a training batch. ``ImageFile.LOAD_TRUNCATED_IMAGES`` is deliberately left unset.

Pixel conventions (the same for every reader):

* 8-bit gray (``L``, and bilevel ``1``) gives 1 channel, ``RGB`` gives 3.
* Alpha is dropped: ``LA`` becomes ``L``, ``RGBA`` becomes ``RGB``. Palette (``P``) images,
  CMYK and other colour modes become ``RGB``.
* 16-bit and 32-bit integer gray (``I;16``, ``I``) is scaled to 8 bit by dividing by 257
  (65535 -> 255), after clipping to 0..65535.
* ``channels=1`` converts colour to gray with Pillow's ITU-R 601-2 luma
  (``L = 0.299 R + 0.587 G + 0.114 B``); ``channels=3`` repeats a gray plane three times.
* ``size=(h, w)`` resizes with Pillow's bilinear filter (which averages when shrinking);
  each image's original ``(h, w)`` is kept in ``ImageSet.orig_sizes``.

File names starting with ``.`` (``.DS_Store``, macOS ``._x.jpg`` resource forks) are skipped,
and only the extensions in ``IMAGE_EXTENSIONS`` count as images.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from reconad.data.imageset import DataError, ImageSet

__all__ = [
    "IMAGE_EXTENSIONS",
    "cache_dir",
    "load_image",
    "read_class_folders",
    "read_flat_folder",
    "read_image_files",
    "read_mvtec",
]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}
)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
PROGRESS_MIN_FILES = 2000  # show a progress bar when decoding more files than this
CACHE_VERSION = 1  # bump when the cached arrays' layout or the decoding changes

Size = tuple[int, int]


# --------------------------------------------------------------------------- single images


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _check_channels(channels: int | None) -> None:
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, not {channels!r}")


def _check_size(size: int | Sequence[int] | None) -> Size | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive (h, w), not {size!r}")
    return int(h), int(w)


def _to_8bit(img: Image.Image, name: str) -> Image.Image:
    """The image as 8-bit ``L`` or ``RGB`` (see the module docstring for the rules)."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in ("1", "LA", "La"):
        return img.convert("L")
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I (32-bit)
        wide = np.asarray(img, dtype=np.int64)
        scaled = (np.clip(wide, 0, 65535) + 128) // 257
        return Image.fromarray(scaled.astype(np.uint8))
    if mode == "F":
        raise DataError(f"{name}: floating-point images (mode F) are not supported")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _decode(
    source: str | Path | bytes, name: str, channels: int | None, size: Size | None
) -> tuple[np.ndarray, Size]:
    """Decode one image fully; returns its ``(C, H, W)`` uint8 array and original (h, w)."""
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else source
        with Image.open(fp) as img:
            img.load()  # decodes every byte: truncation is detected here, not later
            img = _to_8bit(img, name)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{name}: image file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image file (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{name}: unreadable or truncated image ({err})") from err
    orig = (img.height, img.width)
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    if size is not None and orig != size:
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array), orig


def load_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read one image file as a uint8 ``(C, H, W)`` array.

    Args:
        path: any file Pillow reads (PNG, JPEG, BMP, TIFF, PPM/PGM, WebP, ...).
        channels: None keeps the file's own (gray -> 1, colour -> 3); 1 converts to gray
            (ITU-R 601-2 luma); 3 converts to RGB.

    Returns:
        The image, C-contiguous, at its own size.

    Raises:
        DataError: the file is missing, not an image, truncated or corrupt.
    """
    _check_channels(channels)
    return _decode(Path(path), str(path), channels, None)[0]


# --------------------------------------------------------------------------- lists of images


def _decode_all(
    items: Sequence[tuple[str, str | Path | bytes]],
    size: Size | None,
    channels: int | None,
) -> tuple[np.ndarray, list[Size]]:
    """Decode ``(name, source)`` items into one ``(N, C, H, W)`` array, checking uniformity.

    Fails on the first image whose channel count (when ``channels`` is None) or size (when
    ``size`` is None) differs from the first image's, naming both files.
    """
    images: np.ndarray | None = None
    orig_sizes: list[Size] = []
    iterator = enumerate(items)
    if len(items) > PROGRESS_MIN_FILES:
        iterator = track(iterator, total=len(items), description="Decoding images", transient=True)
    for i, (name, source) in iterator:
        array, orig = _decode(source, name, channels, size)
        if images is None:
            images = np.empty((len(items), *array.shape), dtype=np.uint8)
        elif array.shape[0] != images.shape[1]:
            first = items[0][0]
            gray, colour = (first, name) if images.shape[1] == 1 else (name, first)
            raise DataError(
                f"gray and colour images are mixed: {gray} is gray (1 channel), {colour} is "
                "colour (3 channels); pass channels=1 or channels=3 to convert them all"
            )
        elif array.shape[1:] != images.shape[2:]:
            first = items[0][0]
            raise DataError(
                f"images differ in size: {first} is {images.shape[2]}x{images.shape[3]}, "
                f"{name} is {array.shape[1]}x{array.shape[2]} (h x w); pass size=(h, w) to "
                "resize them all to one size"
            )
        images[i] = array
        orig_sizes.append(orig)
    assert images is not None
    return images, orig_sizes


def read_image_files(
    paths: Sequence[str | Path],
    size: int | Sequence[int] | None = None,
    channels: int | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> ImageSet:
    """Read a list of image files into one ImageSet.

    Args:
        paths: the files, in the order the images should have.
        size: ``(h, w)`` (or one int for square) to resize every image to; required when
            the images differ in size.
        channels: None keeps the files' channels (all must agree); 1 or 3 converts.
        labels: optional per-image label indexing ``class_names``.
        class_names: optional label names.

    Returns:
        ImageSet with ``paths`` and ``orig_sizes`` filled in.

    Raises:
        DataError: no paths; a file is unreadable; sizes differ and no ``size`` was given;
            gray and colour files are mixed and no ``channels`` was given.
    """
    _check_channels(channels)
    if len(paths) == 0:
        raise DataError("no image files given")
    names = [str(p) for p in paths]
    images, orig_sizes = _decode_all(
        [(n, Path(p)) for n, p in zip(names, paths, strict=True)], _check_size(size), channels
    )
    return ImageSet(
        images=images,
        labels=None if labels is None else np.asarray(labels, dtype=np.int64),
        class_names=class_names,
        paths=names,
        orig_sizes=orig_sizes,
    )


def _existing_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not path.is_dir():
        raise DataError(f"{path}: {what} is not a folder")
    return path


def _image_files(folder: Path, what: str = "folder") -> list[Path]:
    """The image files directly in ``folder``, sorted by name; DataError when there are none."""
    files = sorted(p for p in _existing_dir(folder, what).iterdir() if _is_image_name(p.name))
    files = [p for p in files if p.is_file()]
    if not files:
        exts = ", ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS))
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
        hint = f"; it holds folders {subdirs[:5]} (a split? pass split=...)" if subdirs else ""
        raise DataError(f"{folder}: {what} has no image files ({exts}){hint}")
    return files


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_flat_folder(
    directory: str | Path,
    size: int | Sequence[int] | None = None,
    channels: int | None = None,
) -> ImageSet:
    """Read every image file directly in a folder (not its subfolders), sorted by name.

    Args:
        directory: the folder.
        size: ``(h, w)`` to resize to; needed when the images differ in size.
        channels: None keeps the files' channels; 1 or 3 converts.

    Returns:
        Unlabelled ImageSet.

    Raises:
        DataError: the folder is missing or holds no image files, or an image is unusable.
    """
    files = _image_files(Path(directory), "image folder")
    return read_image_files(files, size=size, channels=channels)


# --------------------------------------------------------------------------- class folders


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
        found = _image_files(folder, "class folder")
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


# --------------------------------------------------------------------------- MVTec AD layout


def _mask_files(gt_dir: Path, image_stems: set[str]) -> dict[str, Path]:
    """Masks of one defect type by image stem; DataError for a mask without its image."""
    masks = {}
    for path in sorted(p for p in gt_dir.iterdir() if p.is_file() and _is_image_name(p.name)):
        stem = path.stem[: -len("_mask")] if path.stem.endswith("_mask") else None
        if stem is None or stem not in image_stems:
            expected = f"{stem}.*" if stem else "an image named <stem> for <stem>_mask.png"
            raise DataError(
                f"{path}: mask has no image (expected {expected} in "
                f"{gt_dir.parent.parent / 'test' / gt_dir.name})"
            )
        masks[stem] = path
    return masks


def _match_masks(root: Path, files: list[Path], type_names: list[str]) -> list[Path | None]:
    """Per test image its mask file, or None (good images, or no ground truth for the type)."""
    gt_root = root / "ground_truth"
    found: list[Path | None] = [None] * len(files)
    if not gt_root.is_dir():
        return found
    for defect in [d.name for d in _subdirs(gt_root) if d.name != "good"]:
        if defect not in type_names:
            raise DataError(
                f"{gt_root / defect}: masks for defect type '{defect}' but there is no "
                f"folder {root / 'test' / defect}"
            )
    for defect in type_names:
        gt_dir = gt_root / defect
        if defect == "good" or not gt_dir.is_dir():
            continue
        idx = [i for i, f in enumerate(files) if f.parent.name == defect]
        masks = _mask_files(gt_dir, {files[i].stem for i in idx})
        for i in idx:
            if files[i].stem not in masks:
                raise DataError(
                    f"{files[i]}: defect image has no mask (expected "
                    f"{gt_dir / (files[i].stem + '_mask.png')})"
                )
            found[i] = masks[files[i].stem]
    return found


def _load_mask(path: Path, image_path: str, image_size: Size) -> np.ndarray:
    """A mask as bool ``(h, w)``: gray values >= 128 are anomalous (masks have soft edges)."""
    gray, orig = _decode(path, str(path), 1, None)
    if orig != image_size:
        raise DataError(
            f"{path}: mask is {orig[0]}x{orig[1]} (h x w) but its image {image_path} is "
            f"{image_size[0]}x{image_size[1]}"
        )
    return gray[0] >= 128


def read_mvtec(
    root: str | Path,
    split: str,
    size: int | Sequence[int] | None = None,
    channels: int | None = None,
) -> ImageSet:
    """Read one MVTec AD-style category (``train/good``, ``test/<type>``, ``ground_truth``).

    Layout::

        root/train/good/*                      defect-free training images
        root/test/good/*, root/test/<type>/*   test images, "good" or one folder per defect
        root/ground_truth/<type>/<stem>_mask.png   pixel mask of test/<type>/<stem>.*

    ``class_names`` is ``["good", <defect types sorted>]`` for both splits (the types are
    read from ``test/``), so labels mean the same in the train and the test set. Masks are
    kept at each image's *original* size, binarised at gray value 128. An all-zero mask is
    valid (the image still counts as anomalous). Without a ``ground_truth`` folder every
    mask is None; with one, every image of a type whose ``ground_truth/<type>`` exists must
    have its mask (a ``ground_truth/good`` folder, if any, is ignored).

    Args:
        root: the category folder.
        split: ``"train"`` (train/good only) or ``"test"``.
        size: ``(h, w)`` to resize images to (masks are not resized); needed when the
            images differ in size.
        channels: None keeps the files' channels; 1 or 3 converts.

    Returns:
        ImageSet with labels, class names, paths, orig_sizes and masks (a list with one
        entry per image: a bool array, or None for good images and unmasked types).

    Raises:
        DataError: a folder is missing or empty; a defect image has no mask; a mask has no
            image; a mask's size differs from its image's; an image or mask is unusable.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = _existing_dir(root, "MVTec-style category folder")
    test_dir = root / "test"
    types = [d.name for d in _subdirs(test_dir) if d.name != "good"] if test_dir.is_dir() else []
    class_names = ["good", *types]
    if split == "train":
        files = _image_files(root / "train" / "good", "training folder")
        labels = [0] * len(files)
    else:
        _existing_dir(test_dir, "test folder")
        files, labels = [], []
        for label, name in enumerate(class_names):
            if name == "good" and not (test_dir / "good").is_dir():
                continue
            found = _image_files(test_dir / name, "test folder")
            files += found
            labels += [label] * len(found)
    mask_files = _match_masks(root, files, class_names) if split == "test" else [None] * len(files)
    result = read_image_files(files, size, channels, labels=labels, class_names=class_names)
    result.masks = [
        None if m is None else _load_mask(m, str(f), o)
        for m, f, o in zip(mask_files, files, result.orig_sizes, strict=True)
    ]
    result.meta.update(source=str(root), split=split)
    return result

"""Readers for images stored as files: one file, a list, a flat folder, MVTec AD (class
folders and their archives: :mod:`reconad.data.classfolders`).

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

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import track

from reconad.data.imageset import DataError, ImageSet

__all__ = [
    "IMAGE_EXTENSIONS",
    "load_image",
    "read_flat_folder",
    "read_image_files",
    "read_mvtec",
]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}
)
PROGRESS_MIN_FILES = 2000  # show a progress bar when decoding more files than this

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
        iterator = track(  # on stderr: stdout stays machine-readable (predict --json)
            iterator,
            total=len(items),
            description="Decoding images",
            transient=True,
            console=Console(stderr=True),
        )
    for i, (name, source) in iterator:
        array, orig = _decode(source, name, channels, size)
        if images is None:
            images = np.empty((len(items), *array.shape), dtype=np.uint8)
        elif array.shape[0] != images.shape[1]:
            first = items[0][0]
            gray, colour = (first, name) if images.shape[1] == 1 else (name, first)
            raise DataError(
                f"gray and colour images are mixed: {gray} is gray (1 channel), {colour} is "
                "colour (3 channels); convert the files to one mode (in Python, the readers' "
                "channels=1 or channels=3 converts them as they are read)"
            )
        elif array.shape[1:] != images.shape[2:]:
            first = items[0][0]
            raise DataError(
                f"images differ in size: {first} is {images.shape[2]}x{images.shape[3]}, "
                f"{name} is {array.shape[1]}x{array.shape[2]} (h x w); pass size=(h, w) to "
                "the readers, image_size=N to Detector or --image-size N to reconad fit, to "
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


def image_files(folder: Path, what: str = "folder") -> list[Path]:
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
    files = image_files(Path(directory), "image folder")
    return read_image_files(files, size=size, channels=channels)


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
        files = image_files(root / "train" / "good", "training folder")
        labels = [0] * len(files)
    else:
        _existing_dir(test_dir, "test folder")
        files, labels = [], []
        for label, name in enumerate(class_names):
            if name == "good" and not (test_dir / "good").is_dir():
                continue
            found = image_files(test_dir / name, "test folder")
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

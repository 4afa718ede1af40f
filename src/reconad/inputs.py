"""Turn what a user hands the Detector (arrays, tensors, paths, folders) into an ImageSet.

Arrays and tensors may be ``(H, W)``, ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with
C in {1, 3}; uint8 (0-255) or float in [0, 1]. Paths may be image files or folders (a flat
folder of images, or an MVTec-style category whose ``train/good`` is used).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from reconad.data.imageset import DataError, ImageSet

ImageInput = Any  # np.ndarray | torch.Tensor | ImageSet | str | Path | Sequence[str | Path]


def array_to_uint8(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Bring an image array to uint8 ``(N, C, H, W)``.

    Raises:
        DataError: for an unsupported shape, NaN values, or floats outside [0, 1].
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == bool or x.dtype.kind not in "uif":
        raise DataError(f"images must be numeric (uint8 or float in [0, 1]); got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] not in (1, 3):
            raise DataError(
                f"cannot tell the channel axis of an array of shape {x.shape}: images need "
                "1 (gray) or 3 (RGB) channels, as (N, C, H, W) or (N, H, W, C)"
            )
    else:
        raise DataError(
            f"images must be (H, W), (N, H, W), (N, C, H, W) or (N, H, W, C); got {x.shape}"
        )
    if len(x) == 0:
        raise DataError("no images were given (the array is empty)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            raise DataError(f"images contain {int(bad.sum())} NaN or infinite value(s)")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"float images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}] "
                "(divide 0-255 data by 255, or pass uint8)"
            )
        return np.ascontiguousarray(np.round(x * 255.0).astype(np.uint8))
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise DataError(f"integer images must lie in 0-255; got values in [{lo}, {hi}]")
    return np.ascontiguousarray(x.astype(np.uint8))


def to_imageset(x: ImageInput, size: tuple[int, int] | None = None) -> ImageSet:
    """Read or wrap any supported input as an ImageSet (files resized to ``size`` if given).

    Raises:
        DataError: naming the file or folder that cannot be read.
    """
    from reconad.data import folders

    if isinstance(x, ImageSet):
        return x
    if isinstance(x, (str, Path)):
        p = Path(x)
        if p.is_dir():
            if (p / "train" / "good").is_dir():
                return folders.read_mvtec(p, "train", size=size)
            return folders.read_flat_folder(p, size=size)
        if not p.exists():
            raise DataError(f"{p}: no such file or folder")
        return folders.read_image_files([p], size=size)
    if isinstance(x, Sequence) and x and all(isinstance(i, (str, Path)) for i in x):
        return folders.read_image_files([Path(i) for i in x], size=size)
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return ImageSet(array_to_uint8(x))
    raise DataError(
        f"cannot read images from a {type(x).__name__}: pass an array, a tensor, an ImageSet, "
        "an image file, a folder, or a list of image files"
    )


def resize_uint8(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 ``(N, C, H, W)`` images with Pillow's bilinear filter.

    The file readers resize with the same filter, so an image gets the same pixels whether
    it arrives as an array or as a file (kornia's antialiased resize differs slightly).
    """
    if tuple(images.shape[2:]) == tuple(size):
        return images
    out = np.empty((len(images), images.shape[1], *size), dtype=np.uint8)
    for i, img in enumerate(images):
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        r = np.asarray(pil.resize((size[1], size[0]), Image.Resampling.BILINEAR))
        out[i] = r[None] if r.ndim == 2 else r.transpose(2, 0, 1)
    return out


def round_up(side: int, multiple: int, minimum: int) -> int:
    """The smallest multiple of ``multiple`` that is >= max(side, minimum)."""
    side = max(side, minimum)
    return -(-side // multiple) * multiple


#: what ``normalize_intensity`` maps every image's mean and standard deviation to
INTENSITY_MEAN, INTENSITY_STD = 128.0, 48.0
NORMALIZE_MODES = ("none", "image")


def normalize_intensity(images: np.ndarray, mode: str = "image") -> np.ndarray:
    """Per-image intensity normalisation of uint8 ``(N, C, H, W)`` images.

    ``image``: each image is shifted and scaled so that its mean and standard deviation
    (over all its pixels and channels) become 128 and 48, then rounded and clipped to uint8.
    Why: parts photographed under different lighting (Magnetic-Tile's mean gray level
    varies with a standard deviation of 34 of 255 between images) otherwise differ more in
    brightness than in defects. ``none`` returns the images unchanged.

    Raises:
        ValueError: for an unknown mode.
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize={mode!r}: choose from {list(NORMALIZE_MODES)}")
    if mode == "none" or not len(images):
        return images
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = np.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1.0)  # a flat image stays flat
    out = (x - mean) / std * INTENSITY_STD + INTENSITY_MEAN
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)

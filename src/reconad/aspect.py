"""Keep each image's aspect ratio: letterbox it into the working size, and back.

Readers resize every image of a set to one working size ``(H, W)`` so that they stack into
one array, which squashes images of other shapes (Magnetic-Tile's crops range from 0.36 to
2.7 in width / height): a round blowhole becomes an ellipse, and the tile's texture is
stretched by a different factor in every image, so a model has to learn many scales of one
texture. With ``Detector(keep_aspect=True)`` each image is instead shrunk to fit inside
``(H, W)`` with its *original* aspect ratio, centred, and the rest filled by mirroring the
image's own pixels (``numpy.pad`` mode ``symmetric``): the network sees the texture at one
scale, and the border looks like more of the same surface, not like a flat band it would
have to learn. Maps and intermediate images are cut back to the image's box and resized to
``(H, W)``, so everything after scoring (maps at each image's own size, pixel metrics)
works as without the option.

Why from the working-size image rather than the file: the readers have already resized to
``(H, W)``; the box is recomputed from each image's original size, so no extra state
travels with the images. (The content is resampled twice; both are bilinear, and the
second only shrinks one axis.) Image scores are computed on the letterboxed image, mirror
included: the mirrored border repeats the image's own pixels near its edges.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

Size = tuple[int, int]


def content_box(size: Size, orig: Size) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of an ``orig``-shaped image fitted inside ``size``,
    aspect ratio kept (to the nearest pixel, at least 1), centred."""
    (hh, ww), (h, w) = size, orig
    s = min(hh / h, ww / w)
    bh, bw = min(hh, max(1, round(h * s))), min(ww, max(1, round(w * s)))
    return (hh - bh) // 2, (ww - bw) // 2, bh, bw


def letterbox(images: np.ndarray, orig_sizes: list[Size]) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` images (each squashed to ``(H, W)`` from its original size)
    redrawn with their original aspect ratio: shrunk into their box and mirror-padded."""
    size = tuple(images.shape[2:])
    out = images.copy()
    for i, (img, orig) in enumerate(zip(images, orig_sizes, strict=True)):
        top, left, bh, bw = content_box(size, orig)
        if (bh, bw) == size:
            continue
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        r = np.asarray(pil.resize((bw, bh), Image.Resampling.BILINEAR))
        r = r[None] if r.ndim == 2 else r.transpose(2, 0, 1)
        pad = ((0, 0), (top, size[0] - bh - top), (left, size[1] - bw - left))
        out[i] = np.pad(r, pad, mode="symmetric")
    return out


def unletterbox(arrays: np.ndarray, orig_sizes: list[Size]) -> np.ndarray:
    """Float maps ``(N, H, W)`` or images ``(N, C, H, W)`` of letterboxed inputs, cut back
    to each image's box and resized (bilinear) to ``(H, W)``: the frame of the squashed
    image, which the callers resize to the original size."""
    size = tuple(arrays.shape[-2:])
    out = np.array(arrays, dtype=np.float32, copy=True)
    for i, orig in enumerate(orig_sizes[: len(arrays)]):
        top, left, bh, bw = content_box(size, orig)
        if (bh, bw) == size:
            continue
        crop = torch.from_numpy(np.ascontiguousarray(out[i, ..., top : top + bh, left : left + bw]))
        t = crop.reshape(-1, 1, bh, bw)
        r = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
        out[i] = r.reshape(out[i].shape).numpy()
    return out

"""Tiles: train a method on patches of a larger working image and score whole images by tiles.

Industrial images are larger than the 128 x 128 a method trains at on a CPU, and their
defects are small (a Magnetic-Tile blowhole is a few pixels). With a tile side ``P`` smaller
than the working size ``(H, W)`` (``Detector(patch=P)``), the network sees every region of
the image at the working resolution, ``P x P`` at a time:

* training: every image at the working size is cut into tiles that cover it (stride ``P``,
  the last row and column of tiles aligned with the far edge), and the method trains on the
  tiles as it would on images;
* scoring: tiles with half-tile overlap (stride ``P / 2``); the tile maps (and extras, such as
  restorations) are put back in place and averaged where tiles overlap, giving one map at the
  working size; the image's native score (and each alternative score a method offers) is
  the maximum over its tiles, since a defect in one tile makes the image anomalous and a
  mean over tiles would dilute it.

Every method gets this for free: a tile is an image of the size the network was built for.
"""

from __future__ import annotations

import torch
from torch import Tensor


def origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``length`` with ``stride``; the last
    tile ends at ``length`` (so tiles never reach outside the image)."""
    if tile > length:
        raise ValueError(f"tile side {tile} exceeds the image side {length}")
    if stride < 1:
        raise ValueError(f"tile stride must be >= 1; got {stride}")
    out = list(range(0, length - tile + 1, stride))
    if out[-1] != length - tile:
        out.append(length - tile)
    return out


def grid(size: tuple[int, int], tile: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the tiles of an ``(H, W)`` image, row by row."""
    return [(y, x) for y in origins(size[0], tile, stride) for x in origins(size[1], tile, stride)]


def cut(x: Tensor, tile: int, stride: int) -> Tensor:
    """``(B, C, H, W)`` -> ``(B * T, C, tile, tile)``, each image's tiles in :func:`grid` order."""
    corners = grid(tuple(x.shape[-2:]), tile, stride)
    parts = [x[:, :, y : y + tile, x0 : x0 + tile] for y, x0 in corners]
    return torch.stack(parts, 1).flatten(0, 1)


def stitch(t: Tensor, n: int, size: tuple[int, int], stride: int) -> Tensor:
    """Put ``(n * T, C, P, P)`` tile images back as ``(n, C, H, W)``, averaging overlaps."""
    tile = t.shape[-1]
    corners = grid(size, tile, stride)
    t = t.reshape(n, len(corners), *t.shape[1:])
    out = t.new_zeros(n, t.shape[2], *size)
    count = t.new_zeros(1, 1, *size)
    for i, (y, x) in enumerate(corners):
        out[:, :, y : y + tile, x : x + tile] += t[:, i]
        count[:, :, y : y + tile, x : x + tile] += 1
    return out / count


def per_image_max(v: Tensor, n: int) -> Tensor:
    """``(n * T,)`` tile scores -> ``(n,)``: the maximum over each image's tiles."""
    return v.reshape(n, -1).amax(1)


__all__ = ["cut", "grid", "origins", "per_image_max", "stitch"]

"""Map primitives shared by the methods and by post-hoc scoring (the lowest scoring layer).

Per-pixel residual maps (squared error, 1 - SSIM), the SSIM window a size allows, the mean
filter that smooths a map before its maximum is read, the image scores read off a map, and
the feature dissimilarity of two feature vectors. This module imports nothing from
``reconad``: methods use it, and :mod:`reconad.scoring` (above the methods: multi-view
fusion and difficulty normalisation) builds on it and re-exports its names.
"""

from __future__ import annotations

import numpy as np
import torch
from kornia.filters import gaussian_blur2d
from kornia.metrics import ssim
from torch import Tensor

__all__ = [
    "feature_dissimilarity",
    "gaussian_smooth",
    "map_image_scores",
    "mean_filter_side",
    "mse_map",
    "ssim_map",
    "ssim_window",
]


def mean_filter_side(size: tuple[int, int], side_at_256: int = 21) -> int:
    """A mean filter's side at this input size: ``side_at_256`` scaled with the shorter
    side, odd, at least 1 (DRAEM's 21 x 21 at 256 x 256 is 11 at 128, 3 at 32)."""
    k = int(round(side_at_256 * min(size) / 256))
    return max(1, k if k % 2 else k + 1)


def map_image_scores(amap: Tensor, side_at_256: int = 21, topk: float = 0.01) -> dict[str, Tensor]:
    """Image scores read off an anomaly map ``(B, 1, H, W)``, for any map method.

    ``map_max``: the maximum of the map after a mean filter (zero padding counted, as
    DRAEM's official score), so one hot pixel does not decide. ``map_topk``: the mean of the
    top ``topk`` fraction of pixels. Both see a small defect that a mean error dilutes.
    """
    size = (int(amap.shape[-2]), int(amap.shape[-1]))  # ints, also while tracing (export)
    k = mean_filter_side(size, side_at_256)
    smooth = torch.nn.functional.avg_pool2d(amap.float(), k, stride=1, padding=k // 2)
    flat = amap.float().flatten(1)
    top = max(1, int(np.ceil(topk * (size[0] * size[1]))))
    return {
        "map_max": smooth.flatten(1).amax(1),
        "map_topk": flat.topk(top, dim=1).values.mean(1),
    }


def gaussian_smooth(amap: Tensor, sigma: float) -> Tensor:
    """A map ``(B, 1, H, W)`` filtered by a Gaussian of standard deviation ``sigma`` pixels
    (kernel side 2 * ceil(3 sigma) + 1, at most what reflect padding allows; reflect
    padding); ``sigma`` 0 returns it unchanged. Per-pixel residuals are noisy where the
    texture is; a defect is a region, so a filter lifts it above the texture's speckle."""
    if sigma <= 0:
        return amap
    h, w = int(amap.shape[-2]), int(amap.shape[-1])
    side = min(2 * int(np.ceil(3 * sigma)) + 1, 2 * min(h, w) - 1)
    side -= 1 - side % 2  # odd
    if side < 3:
        return amap
    return gaussian_blur2d(amap.float(), (side, side), (sigma, sigma), border_type="reflect")


def mse_map(x: Tensor, x_hat: Tensor) -> Tensor:
    """Squared error per pixel, averaged over channels: ``(B, 1, H, W)``."""
    return (x - x_hat).pow(2).mean(1, keepdim=True)


def ssim_window(size: tuple[int, int], window: int = 11) -> int:
    """An odd SSIM window no larger than the image's shorter side (at least 3)."""
    side = min(size)
    return max(3, min(window, side if side % 2 else side - 1))


def ssim_map(x: Tensor, x_hat: Tensor, window: int = 11) -> Tensor:
    """1 - SSIM per pixel (Gaussian window, sigma 1.5), averaged over channels, >= 0."""
    w = ssim_window(tuple(x.shape[-2:]), window)
    return (1.0 - ssim(x_hat, x, w)).mean(1, keepdim=True).clamp_min(0.0)


def feature_dissimilarity(a: Tensor, b: Tensor) -> Tensor:
    """1 - cosine similarity of ``(B, D)`` features, as 0.5 ||a/|a| - b/|b| ||^2.

    The squared-distance form is exactly 0 for identical features (``1 - cos`` in floating
    point is not), which keeps a perfect reconstruction's view at 0.
    """
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return 0.5 * (a - b).pow(2).sum(1)

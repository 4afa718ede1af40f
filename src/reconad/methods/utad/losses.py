"""UTAD's losses and its anomaly map, as plain functions on tensors.

* Least-squares GAN [paper]: the discriminator pushes real outputs to 1 and fakes to 0,
  the generator pushes fakes to 1; summed over the discriminator's scales.
* KL of the variational information head to N(0, I) [paper]; averaged over the code's
  dimensions [reconstructed: the reduction is not published].
* Mutual information [reconstructed, Deep InfoMax]: the Jensen-Shannon estimator
  ``softplus(-T(real)) + softplus(T(fake))``, fakes pairing each code with another image's
  local features (the batch rolled by one).
* Residual r(a, b) = 1 - SSIM map on gray images (Gaussian window 11, sigma 1.5) [paper],
  clipped to [0, 1] as the official post-processing does.
* Anomaly map e = max(0, r(x, x_hat) + r(x, mean m_hat) - Var(x_hat samples) - r(x_hat, m))
  [paper, official code]; the image score is the maximum of the Gaussian-smoothed map
  [reconstructed].
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.filters import gaussian_blur2d
from kornia.metrics import ssim
from torch import Tensor


def lsgan_d(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Discriminator loss: sum over scales of mean (D(real) - 1)^2 + mean D(fake)^2."""
    return sum(((r - 1) ** 2).mean() + (f**2).mean() for r, f in zip(real, fake, strict=True))


def lsgan_g(fake: list[Tensor]) -> Tensor:
    """Generator loss: sum over scales of mean (D(fake) - 1)^2."""
    return sum(((f - 1) ** 2).mean() for f in fake)


def kl_to_standard_normal(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)), averaged over batch and dimensions."""
    return 0.5 * (mean**2 + log_var.exp() - 1.0 - log_var).mean()


def mi_jsd(real: Tensor, fake: Tensor) -> Tensor:
    """Negative Jensen-Shannon MI estimate from critic logits (lower = more information)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def to_gray(x: Tensor) -> Tensor:
    """ITU-R 601 luma for 3-channel images; 1-channel images unchanged."""
    return rgb_to_grayscale(x) if x.shape[1] == 3 else x


def ssim_window(side: int, window: int = 11) -> int:
    """The SSIM window, shrunk (odd, >= 3) where the image is too small for it."""
    limit = side if side % 2 else side - 1
    return max(3, min(window, limit))


def residual(a: Tensor, b: Tensor, window: int = 11, max_val: float = 1.0) -> Tensor:
    """r(a, b) = 1 - SSIM map of the gray images, clipped to [0, 1]: ``(B, 1, H, W)``.

    ``max_val`` is SSIM's data range (its constants grow with its square): 1 for [0, 1]
    images; 2 reproduces scikit-image's old default for float images, which the official
    script relied on (larger constants damp residuals in flat, dark regions).
    """
    w = ssim_window(min(a.shape[-2:]), window)
    return (1.0 - ssim(to_gray(a), to_gray(b), w, max_val=max_val)).clamp(0.0, 1.0)


def match_range(img: Tensor, ref: Tensor, eps: float = 1e-6) -> Tensor:
    """Rescale each image and channel of ``img`` linearly onto ``ref``'s [min, max].

    The official post-processing does this to every generated image before SSIM
    (reconstructions onto the impression's range, naive impressions onto the input's).
    """
    lo, hi = img.amin((-2, -1), keepdim=True), img.amax((-2, -1), keepdim=True)
    r_lo, r_hi = ref.amin((-2, -1), keepdim=True), ref.amax((-2, -1), keepdim=True)
    return (img - lo) / (hi - lo).clamp_min(eps) * (r_hi - r_lo) + r_lo


def anomaly_map(
    x: Tensor,
    impression: Tensor,
    reconstruction: Tensor,
    naive_impressions: Tensor,
    recon_samples: Tensor,
    window: int = 11,
    var_weight: float = 1.0,
    max_val: float = 1.0,
) -> Tensor:
    """UTAD's map e = max(0, r(x, x_hat) + r(x, mean m_hat) - Var - r(x_hat, m)).

    Args:
        x, impression, reconstruction: ``(B, C, H, W)`` in [0, 1].
        naive_impressions: ``(K, B, C, H, W)``, impression decoder(content(x), s_k).
        recon_samples: ``(K, B, C, H, W)``, image decoders whose per-pixel variance (of the
            gray images) is subtracted; K = 1 gives zero variance.
        window, max_val: the SSIM window and data range (see :func:`residual`).
        var_weight: the variance's weight against the residuals (1: all terms in [0, 1]
            intensity units; 255: the official script's uint8 arithmetic).

    Returns:
        ``(B, 1, H, W)``, non-negative.
    """
    k, b = recon_samples.shape[:2]
    gray = to_gray(recon_samples.flatten(0, 1)).unflatten(0, (k, b))
    var = gray.var(0, unbiased=False)
    e = (
        residual(x, reconstruction, window, max_val)
        + residual(x, naive_impressions.mean(0), window, max_val)
        - var_weight * var
        - residual(reconstruction, impression, window, max_val)
    )
    return e.clamp_min(0.0)


def smoothed_max(amap: Tensor, sigma: float) -> Tensor:
    """Image score: the maximum of the map after a Gaussian blur of ``sigma`` pixels."""
    if sigma > 0:
        radius = max(1, math.ceil(3 * sigma))
        radius = min(radius, min(amap.shape[-2:]) - 1)
        amap = gaussian_blur2d(amap, (2 * radius + 1,) * 2, (sigma, sigma))
    return amap.flatten(1).amax(1)


__all__ = [
    "anomaly_map",
    "kl_to_standard_normal",
    "lsgan_d",
    "lsgan_g",
    "match_range",
    "mi_jsd",
    "residual",
    "smoothed_max",
    "ssim_window",
    "to_gray",
]

"""Synthetic anomalies after DRAEM, in torch, vectorised over the batch, without external data.

Shared: DRAEM trains on them (``methods/draem``), and ``score_choice`` uses them to choose an
image score on held-out normals without any test label.

For every image of a training batch [paper, official ``data_loader.py``]:

* mask M: 2-d Perlin noise with 2^kx x 2^ky lattice cells over the image (kx, ky drawn
  independently from 0..``scales``-1), rotated by an angle in [-90, 90] degrees (zero fill),
  thresholded at ``threshold``;
* texture A, then 3 distinct colour/geometry operations out of 10 (:func:`jitter`);
* I_a = (1 - M) I + M (beta I + (1 - beta) A), beta ~ U[0, ``max_beta``]: beta is the share
  of the original image left inside the mask, so the anomaly's opacity is 1 - beta in
  [0.2, 1] (the official code's convention);
* with probability 1 - ``anomaly_prob`` the image is left as it is and M = 0;
* before all this, with probability ``rotate_prob`` the image itself (target and input) is
  rotated by an angle in [-90, 90] degrees with zero fill (the official loader does so).

Ours [reconstructed]: the official code draws A from the DTD texture set; we use no external
data. A comes from one of three sources, drawn per image with ``texture_probs``: another
image of the same batch (shifted by a random offset in the batch, randomly flipped, rotated
by a multiple of 90 degrees when square, and rolled spatially), a second Perlin map painted
between two random colours, or one flat random colour. The Perlin lattice is sampled at pixel
centres (the official code samples at pixel corners), so even a 32-pixel side with 32 cells
gives a non-zero map. Every random number comes from the global CPU torch RNG (the training
loop checkpoints it), drawn as small parameter tensors and moved to the batch's device, so a
seed fixes the augmentation on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

N_JITTERS = 10


def _rand(*shape: int, device: torch.device) -> Tensor:
    """Uniform [0, 1) numbers from the global CPU generator, moved to ``device``."""
    return torch.rand(*shape).to(device)


def _fade(t: Tensor) -> Tensor:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin(n: int, size: tuple[int, int], scales: int, device: torch.device) -> Tensor:
    """``n`` Perlin noise maps ``(n, H, W)`` (values about [-1, 1]) with 2^k x 2^l cells,
    k and l drawn per map from 0..scales-1."""
    h, w = size
    top = 2 ** (scales - 1)
    res = 2 ** torch.randint(0, scales, (n, 2))
    angles = (2 * math.pi * torch.rand(n, (top + 1) ** 2)).to(device)
    gy, gx = angles.cos(), angles.sin()  # the lattice's unit gradients, (n, (top + 1)^2)
    res = res.to(device)

    def axis(length: int, r: Tensor) -> tuple[Tensor, Tensor]:
        u = (torch.arange(length, device=device) + 0.5) / length * r[:, None]  # (n, length)
        cell = u.floor().clamp(max=r[:, None] - 1)
        return cell.long(), u - cell

    iy, fy = axis(h, res[:, 0])
    ix, fx = axis(w, res[:, 1])

    def corner(dy: int, dx: int) -> Tensor:
        idx = ((iy[:, :, None] + dy) * (top + 1) + ix[:, None, :] + dx).flatten(1)
        ay, ax = gy.gather(1, idx).view(n, h, w), gx.gather(1, idx).view(n, h, w)
        return ay * (fy[:, :, None] - dy) + ax * (fx[:, None, :] - dx)

    ty, tx = _fade(fy)[:, :, None], _fade(fx)[:, None, :]
    top_row = torch.lerp(corner(0, 0), corner(0, 1), tx)
    bottom_row = torch.lerp(corner(1, 0), corner(1, 1), tx)
    return math.sqrt(2.0) * torch.lerp(top_row, bottom_row, ty)


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image of ``x`` ``(B, C, H, W)`` about its centre by ``degrees`` ``(B,)``,
    in pixel space (so non-square images are not sheared), with zero fill."""
    h, w = x.shape[-2:]
    a = torch.deg2rad(degrees.to(x.device, x.dtype))
    cos, sin = a.cos(), a.sin()
    theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def perlin_masks(
    n: int, size: tuple[int, int], scales: int, threshold: float, device: torch.device
) -> Tensor:
    """Binary masks ``(n, 1, H, W)``: rotated Perlin noise above ``threshold``."""
    noise = perlin(n, size, scales, device)[:, None]
    noise = rotate(noise, torch.rand(n) * 180 - 90)
    return (noise > threshold).float()


def _pick(choose: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(choose.view(-1, 1, 1, 1), new, old)


def _equalize(x: Tensor) -> Tensor:
    """Histogram equalisation per image and channel over 256 grey levels."""
    n, c = x.shape[:2]
    q = (x.clamp(0, 1) * 255).round().long().flatten(2)  # (n, c, hw)
    offset = torch.arange(n * c, device=x.device).view(n, c, 1) * 256
    hist = torch.bincount((q + offset).flatten(), minlength=n * c * 256).view(n, c, 256)
    cdf = hist.cumsum(-1).to(x.dtype)
    lo = cdf.gather(-1, (hist > 0).to(torch.uint8).argmax(-1, keepdim=True))  # first level
    lut = ((cdf - lo) / (cdf[..., -1:] - lo).clamp_min(1)).clamp(0, 1)
    return lut.gather(-1, q).view_as(x)


def jitter(a: Tensor) -> Tensor:
    """Apply 3 distinct random operations out of 10 to each texture ``(B, C, H, W)`` in [0, 1].

    Our torch versions of the official imgaug list, applied in this fixed order: gamma
    (0.5-2, per channel), brightness (x0.8-1.2, +-30/255), sharpness, saturation (0.5-1.5) and
    a channel roll (colour only), solarise (p 0.5, threshold 32-128/255), posterise (1-8 bits),
    invert, autocontrast, equalise, rotation (+-45 degrees).
    """
    n, c = a.shape[:2]
    dev = a.device
    on = torch.rand(n, N_JITTERS).argsort(1)[:, :3]
    on = torch.zeros(n, N_JITTERS, dtype=torch.bool).scatter_(1, on, True).to(dev)
    gamma = 0.5 * 4 ** _rand(n, c, 1, 1, device=dev)
    a = _pick(on[:, 0], a.clamp_min(1e-6) ** gamma, a)
    mul = 0.8 + 0.4 * _rand(n, 1, 1, 1, device=dev)
    add = (2 * _rand(n, 1, 1, 1, device=dev) - 1) * 30 / 255
    a = _pick(on[:, 1], a * mul + add, a).clamp(0, 1)
    box = torch.full((c, 1, 3, 3), 1 / 9, device=dev, dtype=a.dtype)
    blur = F.conv2d(F.pad(a, (1, 1, 1, 1), mode="replicate"), box, groups=c)
    sharp = _rand(n, 1, 1, 1, device=dev)
    a = _pick(on[:, 2], (a + sharp * (a - blur)).clamp(0, 1), a)
    if c > 1:
        gray = a.mean(1, keepdim=True)
        sat = 0.5 + _rand(n, 1, 1, 1, device=dev)
        order = (torch.arange(c)[None] + torch.randint(0, c, (n, 1))) % c  # channel roll
        order = order.to(dev).view(n, c, 1, 1).expand_as(a)
        rolled = (gray + sat * (a - gray)).gather(1, order)
        a = _pick(on[:, 3], rolled.clamp(0, 1), a)
    thr = (32 + 96 * _rand(n, 1, 1, 1, device=dev)) / 255
    solar = on[:, 4] & (torch.rand(n) < 0.5).to(dev)
    a = _pick(solar, torch.where(a > thr, 1 - a, a), a)
    step = 2.0 ** (8 - torch.randint(1, 9, (n, 1, 1, 1))).to(dev, a.dtype)
    a = _pick(on[:, 5], torch.floor(a * 255 / step) * step / 255, a)
    a = _pick(on[:, 6], 1 - a, a)
    lo, hi = a.amin((2, 3), keepdim=True), a.amax((2, 3), keepdim=True)
    a = _pick(on[:, 7], (a - lo) / (hi - lo).clamp_min(1e-6), a)
    a = _pick(on[:, 8], _equalize(a), a)
    return _pick(on[:, 9], rotate(a, torch.rand(n) * 90 - 45), a)


def batch_textures(x: Tensor) -> Tensor:
    """Each image's texture from another image of the batch: shifted in the batch, flipped,
    rotated by a multiple of 90 degrees (square images), rolled spatially."""
    n, _, h, w = x.shape
    dev = x.device
    shift = torch.randint(1, n, (1,)).item() if n > 1 else 0
    a = x.roll(int(shift), 0)
    a = _pick(_rand(n, device=dev) < 0.5, a.flip(-1), a)
    a = _pick(_rand(n, device=dev) < 0.5, a.flip(-2), a)
    if h == w:
        a = _pick(_rand(n, device=dev) < 0.5, a.transpose(-1, -2), a)
    dy, dx = torch.randint(0, h, (n, 1)).to(dev), torch.randint(0, w, (n, 1)).to(dev)
    rows = (torch.arange(h, device=dev)[None] + dy) % h  # (n, h): a per-image roll
    cols = (torch.arange(w, device=dev)[None] + dx) % w
    a = a.gather(2, rows.view(n, 1, h, 1).expand_as(a))
    return a.gather(3, cols.view(n, 1, 1, w).expand_as(a))


def textures(x: Tensor, probs: tuple[float, float, float], scales: int) -> Tensor:
    """Anomaly textures ``(B, C, H, W)`` in [0, 1], before :func:`jitter`: from the batch,
    Perlin noise between two colours, or a flat colour, drawn per image with ``probs``."""
    n, c, h, w = x.shape
    dev = x.device
    source = torch.multinomial(torch.tensor(probs, dtype=torch.float), n, replacement=True)
    source = source.to(dev)
    noise = ((perlin(n, (h, w), scales, dev)[:, None] + 1) / 2).clamp(0, 1)
    c0, c1 = _rand(n, c, 1, 1, device=dev), _rand(n, c, 1, 1, device=dev)
    painted = c0 + (c1 - c0) * noise
    flat = _rand(n, c, 1, 1, device=dev).expand(n, c, h, w)
    out = _pick(source == 1, painted, flat)
    return _pick(source == 0, batch_textures(x), out)


def synthesize(
    x: Tensor,
    *,
    anomaly_prob: float = 0.5,
    max_beta: float = 0.8,
    rotate_prob: float = 0.3,
    texture_probs: tuple[float, float, float] = (0.5, 0.25, 0.25),
    scales: int = 6,
    threshold: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Synthetic anomalies for a batch ``x`` ``(B, C, H, W)`` in [0, 1] (see the module doc).

    Returns:
        ``(target, augmented, mask)``: the clean (possibly rotated) images, the same images
        with anomalies, and the masks ``(B, 1, H, W)`` in {0, 1}; outside the mask
        ``augmented`` equals ``target``.
    """
    n, _, h, w = x.shape
    dev = x.device
    turn = torch.rand(n) < rotate_prob
    angle = torch.rand(n) * 180 - 90
    if bool(turn.any()):
        x = _pick(turn.to(dev), rotate(x, angle), x)
    has = (torch.rand(n) < anomaly_prob).to(dev, x.dtype).view(n, 1, 1, 1)
    mask = perlin_masks(n, (h, w), scales, threshold, dev).to(x.dtype) * has
    a = jitter(textures(x, texture_probs, scales))
    beta = max_beta * _rand(n, 1, 1, 1, device=dev).to(x.dtype)
    augmented = torch.where(mask > 0, beta * x + (1 - beta) * a, x)
    return x, augmented, mask


__all__ = ["jitter", "perlin", "perlin_masks", "rotate", "synthesize", "textures"]

"""DRAEM: a discriminatively trained reconstruction embedding (Zavrtanik, Kristan, Skocaj,
ICCV 2021); official code VitjanZ/DRAEM, read to settle details.

[paper, official code] Two networks trained together on images with synthetic anomalies
(``reconad/synthetic.py``). The reconstructive sub-network, an encoder-decoder without skips, maps
the augmented image I_a back to the clean image I. The discriminative sub-network, a U-Net,
takes the concatenation (reconstruction, I_a) and predicts the anomaly mask M as 2-class
logits. Loss: L2(I_rec, I) + 1 - SSIM(I_rec, I) + focal loss (gamma 2) of the logits against
M; the segmentation loss also trains the reconstructive network (no detach, as officially).
One Adam optimiser (lr 1e-4) for both, lr x0.2 at 80% and 90% of training, batch 8.
Initialisation: convolutions N(0, 0.02), batch-norm scales N(1, 0.02).

Score [paper, official ``test_DRAEM.py``]: the map is the softmax probability of
"anomalous" at the input size; the image score is the maximum of the map after a mean filter
of 21 x 21 pixels at 256 x 256 (zero-padded, scaled with the input side, kept odd).

Ours [reconstructed]: anomaly textures from the training batch, Perlin noise or flat colours
instead of the DTD texture set (see ``reconad/synthetic.py``); the focal loss computed from the
log-softmax (the official one adds 1e-5 to p_t and smooths the one-hot target by 1e-5);
kornia's SSIM (Gaussian window 11, sigma 1.5, reflect padding; the official one pads with
zeros); training length in optimiser steps rather than epochs (``steps``); a ``topk_mean``
component, the mean of the top ``topk`` fraction of map pixels, beside the official score.

Presets: ``cpu`` (the default; widths 16 / 8, 2,500 steps, lr 3e-4, sized for 128 x 128 on
2 cores; the learning rate chosen on training images only, see the card)
and ``paper`` (widths 128 / 64, 22,400 steps = 700 epochs of 32 batches, for 256 x 256).
The card, ``README.md``, has the measurements behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from kornia.metrics import ssim
from torch import Tensor

from reconad.methods.base import (
    Method,
    OptimGroup,
    ScoreOutput,
    Stage,
    cat_outputs,
    register,
)
from reconad.methods.blocks import dcgan_init
from reconad.methods.draem.network import DiscriminativeNet, ReconstructiveNet
from reconad.methods.maps import map_image_scores, mean_filter_side
from reconad.synthetic import synthesize


@dataclass
class DRAEMConfig:
    """DRAEM hyper-parameters; defaults are the ``paper`` preset (see ``DRAEM.presets``)."""

    recon_width: int = 128
    disc_width: int = 64
    lr: float = 1e-4
    batch_size: int = 8
    #: training length in optimiser steps: 700 epochs of ceil(250 / 8) = 32 batches (an
    #: MVTec AD category of about 250 images; the official loader has no drop_last)
    steps: int = 22_400
    milestones: tuple[float, ...] = (0.8, 0.9)
    gamma: float = 0.2
    focal_gamma: float = 2.0
    ssim_window: int = 11
    # synthetic anomalies (reconad/synthetic.py)
    anomaly_prob: float = 0.5
    max_beta: float = 0.8
    rotate_prob: float = 0.3
    texture_probs: tuple[float, ...] = (0.5, 0.25, 0.25)  # batch image, Perlin, flat colour
    perlin_scales: int = 6  # 2^k cells per axis, k in 0..5
    threshold: float = 0.5
    # scoring
    score_window: int = 21  # mean filter side at 256 x 256
    topk: float = 0.01
    preset: str = "paper"


PRESETS: dict[str, dict[str, Any]] = {
    # First key = default. Sized for 128 x 128: about 0.4 (gray) to 0.5 (RGB) s per step
    # on 2 free cores, so 2,500 steps take about 17-21 min (estimate in README.md).
    # lr 3e-4, not the paper's 1e-4: chosen on Magnetic-Tile training images only (600-step
    # probe: training loss and held-out normals vs synthetic defects; card, README.md)
    "cpu": {"recon_width": 16, "disc_width": 8, "steps": 2_500, "lr": 3e-4},
    "paper": {},
}


def focal_loss(logits: Tensor, mask: Tensor, gamma: float = 2.0) -> Tensor:
    """Mean focal loss of 2-class logits ``(B, 2, H, W)`` against a {0, 1} mask ``(B, 1, H, W)``."""
    log_p = F.log_softmax(logits, dim=1).gather(1, mask.long())
    return -((1 - log_p.exp()).pow(gamma) * log_p).mean()


@register
class DRAEM(Method):
    """DRAEM: reconstruct images with synthetic anomalies and segment them; see the module doc."""

    name = "draem"
    summary = "DRAEM: reconstructive + discriminative nets trained on synthetic anomalies"
    provenance = (
        "paper (Zavrtanik et al., ICCV 2021) and official code; anomaly textures from the "
        "training images, Perlin noise and flat colours, not DTD"
    )
    produces_maps = True
    has_components = True  # topk_mean beside the official score
    Config = DRAEMConfig
    size_multiple = 32  # 5 poolings in the discriminative U-Net
    min_size = 32
    #: images per forward pass when scoring (bounds memory at 256 x 256)
    score_chunk = 16
    #: measured at 128 x 128, cpu preset, batch 8, 1 thread: 1.16 -> 1.01 CPU s per step
    channels_last = True
    presets = PRESETS

    def __init__(self, config: DRAEMConfig, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__(config, channels, image_size)
        c = config
        h, w = self.image_size
        if h % self.size_multiple or w % self.size_multiple or min(h, w) < self.min_size:
            raise ValueError(f"draem needs sides that are multiples of 32; got {h}x{w}")
        for key in ("recon_width", "disc_width", "batch_size", "steps"):
            if getattr(c, key) < 1:
                raise ValueError(f"{key} must be >= 1; got {getattr(c, key)}")
        if len(c.texture_probs) != 3 or min(c.texture_probs) < 0 or sum(c.texture_probs) <= 0:
            raise ValueError(f"texture_probs needs 3 weights >= 0; got {c.texture_probs}")
        if not 0 <= c.max_beta <= 1 or not 0 <= c.anomaly_prob <= 1:
            raise ValueError("max_beta and anomaly_prob must lie in [0, 1]")
        if not 0 < c.topk <= 1:
            raise ValueError(f"topk must lie in (0, 1]; got {c.topk}")
        self.recon = ReconstructiveNet(self.channels, c.recon_width)
        self.disc = DiscriminativeNet(2 * self.channels, c.disc_width)
        dcgan_init(self)

    # ---- training -------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.config
        group = OptimGroup(
            [self.recon, self.disc], c.lr, milestones=tuple(c.milestones), gamma=c.gamma
        )
        # sized in optimiser steps alone: the loop runs as many epochs as that takes
        return [Stage("draem", 1, {"model": group}, batch_size=c.batch_size, steps=c.steps)]

    def augment(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(target, augmented, mask)`` for a batch in [0, 1] (``synthetic.synthesize``)."""
        c = self.config
        return synthesize(
            x,
            anomaly_prob=c.anomaly_prob,
            max_beta=c.max_beta,
            rotate_prob=c.rotate_prob,
            texture_probs=tuple(c.texture_probs),
            scales=c.perlin_scales,
            threshold=c.threshold,
        )

    def _window(self) -> int:
        side = min(self.image_size)
        return max(3, min(self.config.ssim_window, side if side % 2 else side - 1))

    def losses(self, target: Tensor, augmented: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """The three loss terms for one augmented batch: ``l2``, ``ssim`` and ``focal``."""
        rec = self.recon(augmented)
        logits = self.disc(torch.cat([rec, augmented], dim=1))
        return {
            "l2": F.mse_loss(rec, target),
            "ssim": 1.0 - ssim(rec, target, self._window()).mean(),
            "focal": focal_loss(logits, mask, self.config.focal_gamma),
        }

    def training_step(self, batch: Tensor, stage: str) -> Tensor:
        if stage != "draem":
            raise ValueError(f"draem has one stage, 'draem'; got {stage!r}")
        return sum(self.losses(*self.augment(batch)).values())

    # ---- inference ------------------------------------------------------------------
    def reconstruct(self, x: Tensor) -> Tensor:
        """The reconstructive sub-network's output, clipped to [0, 1]."""
        return self.recon(x).clamp(0, 1)

    def segment(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(reconstruction, map)``: the raw reconstruction and P(anomalous) ``(B, 1, H, W)``."""
        rec = self.recon(x)
        prob = F.softmax(self.disc(torch.cat([rec, x], dim=1)), dim=1)[:, 1:]
        return rec, prob

    def score(self, x: Tensor) -> ScoreOutput:
        if len(x) > self.score_chunk:
            return cat_outputs([self.score(chunk) for chunk in x.split(self.score_chunk)])
        rec, amap = self.segment(x)
        # the max of the mean-filtered map, zeros counted (official); and the top-k mean
        read = map_image_scores(amap, self.config.score_window, self.config.topk)
        return ScoreOutput(
            image_score=read["map_max"],
            anomaly_map=amap,
            extras={"input": x, "restoration": rec.clamp(0, 1), "segmentation": amap},
            components={"topk_mean": read["map_topk"]},
        )


__all__ = ["DRAEM", "DRAEMConfig", "PRESETS", "focal_loss", "mean_filter_side"]

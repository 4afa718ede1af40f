"""ARNet: the Attribute Restoration framework (Huang, Ye, Cao, Li, Zhang, Lu; IEEE TMM 2022,
arXiv 1911.10676, first titled ITAE): the contract. The U-Net is in ``network.py``, the card in
``README.md``.

[paper] Reconstruction with input = target lets a network copy anomalies through. ARNet
erases attributes of the input instead (orientation by rotation, colour by graying) and
trains a U-Net to restore the original; on images of another class the restored
attributes come out wrong, so the restoration error is large.

* [paper] Network: U-Net, blocks of two (3x3 conv, BatchNorm, ReLU); encoder widths 64, 128,
  256, 512, 512 with four 2x2 max-pools; decoder bilinear x2 upsampling, concatenated skips,
  widths 256, 128, 64, 64; a final 3x3 conv to the image's channels. Input: the erased
  image (1 channel when graying is an erasure); output: the original channels.
* [paper] Training erasure: one rotation drawn from {0, 90, 180, 270} degrees per sample,
  then graying for colour data. Loss: MSE between restoration and the original image.
* [paper: L1 error; rotation average as in public implementations] Score:
  S(x) = mean over the 4 rotations r of mean |x - G(erase_r(x))|.
* Options (off by default): ``normalize_rotations`` divides each rotation's error by its
  mean on held-out normal images (the public ITAE code does this with training images).
  Whatever the option, ``score`` also returns each rotation's own error (``rot0`` ...
  ``rot270``) and the normalised score (``rot_normalized``) as components, so one run
  reports all of them.

Our reading [reconstructed]:
* Sigmoid output (data in [0, 1]); graying by ITU-R 601 luma (kornia); ``hflip="auto"``
  flips training images horizontally (before erasing) for colour data only, as the paper
  did for natural images (CIFAR) and not for digits.
* Training schedule: Adam, lr 1e-4, weight decay 1e-5, batch 32 and step decay x0.1 after
  80% of the epochs (paper preset); the cpu preset trades width for speed (see ``presets``).
* The anomaly map is the per-pixel L1 error averaged over rotations and channels.
* No epoch is chosen on the test set: training runs a fixed schedule and the last weights
  are used (the public re-implementation kept the best test-AUROC epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from torch import Tensor

from reconad.methods.arnet.network import UNet
from reconad.methods.base import Method, OptimGroup, ScoreOutput, Stage, register

ERASERS = ("rotate", "gray")


@dataclass
class ARNetConfig:
    """ARNet hyper-parameters; defaults are the paper preset, see ``ARNet.presets``."""

    widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    erase: tuple[str, ...] = ERASERS
    lr: float = 1e-4
    weight_decay: float = 1e-5
    batch_size: int = 32
    epochs: int = 50
    milestones: tuple[float, ...] = (0.8,)
    hflip: str = "auto"
    normalize_rotations: bool = False
    preset: str = "paper"

    def __post_init__(self) -> None:
        if isinstance(self.erase, str):  # --set erase=rotate or erase=rotate,gray
            self.erase = tuple(e.strip() for e in self.erase.split(",") if e.strip())


@register
class ARNet(Method):
    """Attribute restoration network (ARNet / ITAE); see the module docstring."""

    name = "arnet"
    has_components = True  # each rotation's error and the normalised score
    channels_last = True  # the real loop, 2 threads: 335 -> 434 img/s (MNIST), 304 -> 404 (CIFAR)
    summary = "ARNet: restore erased orientation/colour with a U-Net; L1 restoration error"
    provenance = "paper (Huang et al., IEEE TMM 2022); schedule and output layer ours"
    Config = ARNetConfig
    size_multiple = 16
    min_size = 16
    presets = {
        # First key = default. Narrower (1/4 width) U-Net and a shorter, faster schedule.
        "cpu": {"widths": (16, 32, 64, 128, 128), "epochs": 15, "lr": 1e-3, "batch_size": 64},
        "paper": {},
    }

    def __init__(self, config: ARNetConfig, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__(config, channels, image_size)
        unknown = set(config.erase) - set(ERASERS)
        if unknown:
            raise ValueError(f"unknown eraser(s) {sorted(unknown)}; choose from {ERASERS}")
        if "rotate" not in config.erase and not ("gray" in config.erase and channels == 3):
            raise ValueError(
                f"erase={tuple(config.erase)} erases nothing on {channels}-channel images, so "
                "ARNet would be a plain autoencoder: erase rotate, or gray on colour images"
            )
        if "rotate" in config.erase and self.image_size[0] != self.image_size[1]:
            raise ValueError(f"the rotation eraser needs square images; got {self.image_size}")
        if config.hflip not in ("auto", "on", "off"):
            raise ValueError(f"hflip must be 'auto', 'on' or 'off'; got {config.hflip!r}")
        self.gray = "gray" in config.erase and channels == 3
        self.rotations = (0, 1, 2, 3) if "rotate" in config.erase else (0,)
        self.net = UNet(1 if self.gray else channels, channels, tuple(config.widths))
        self.register_buffer("rotation_scale", torch.ones(len(self.rotations)))
        # Each rotation's mean error on held-out normals, always measured by calibrate():
        # the normalised score is then reported as a component even when it is not the score.
        self.register_buffer("rotation_mean", torch.ones(len(self.rotations)))

    @property
    def flips(self) -> bool:
        return self.config.hflip == "on" or (self.config.hflip == "auto" and self.channels == 3)

    def erase(self, x: Tensor, k: int | Tensor) -> Tensor:
        """Rotate by k * 90 degrees (one k, or one per sample), then gray if configured."""
        if isinstance(k, int):
            x = torch.rot90(x, k, dims=(2, 3)) if k else x
        else:
            out = x.clone()
            for r in self.rotations[1:]:
                sel = k == r
                if sel.any():
                    out[sel] = torch.rot90(x[sel], r, dims=(2, 3))
            x = out
        return rgb_to_grayscale(x) if self.gray else x

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def stages(self) -> list[Stage]:
        c = self.config
        group = OptimGroup([self.net], c.lr, c.weight_decay, milestones=tuple(c.milestones))
        return [Stage("restore", c.epochs, {"net": group}, batch_size=c.batch_size)]

    def training_step(self, batch: Tensor, stage: str) -> Tensor:
        if self.flips:
            flip = torch.rand(len(batch), device=batch.device) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        k = torch.randint(len(self.rotations), (len(batch),), device=batch.device)
        k = torch.as_tensor(self.rotations, device=batch.device)[k]
        return F.mse_loss(self(self.erase(batch, k)), batch)

    def _errors(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-rotation L1 maps ``(R, B, 1, H, W)``, and the first rotated erasure/restoration."""
        maps, shown = [], None
        for r in self.rotations:
            erased = self.erase(x, r)
            restored = self(erased)
            maps.append((x - restored).abs().mean(1, keepdim=True))
            if shown is None or r == 1:
                shown = (erased, restored)
        return torch.stack(maps), shown[0], shown[1]

    def reconstruct(self, x: Tensor) -> Tensor:
        """The restoration of the un-rotated erased input (grayed for colour data)."""
        return self(self.erase(x, 0))

    def features(self, x: Tensor) -> Tensor:
        """The U-Net bottleneck of the un-rotated erased input, global-average pooled."""
        return self.net.encode(self.erase(x, 0))[-1].mean((2, 3))

    @classmethod
    def needs_held_out(cls, config) -> bool:
        """See :meth:`Method.needs_held_out`."""
        return bool(config.normalize_rotations)

    def calibrate(self, normals: Tensor) -> None:
        """Each rotation's mean error on held-out normals; it divides the errors in the
        score with ``normalize_rotations``, and in the ``rot_normalized`` component always."""
        sums = torch.zeros(len(self.rotations), dtype=torch.float64)
        for i in range(0, len(normals), 256):
            maps, _, _ = self._errors(normals[i : i + 256])
            sums += maps.flatten(2).mean(2).sum(1).double().cpu()
        mean = (sums / max(1, len(normals))).clamp_min(1e-12).to(self.rotation_mean)
        self.rotation_mean.copy_(mean)
        if self.config.normalize_rotations:
            self.rotation_scale.copy_(mean)

    def score(self, x: Tensor) -> ScoreOutput:
        maps, erased, restored = self._errors(x)
        per_rotation = maps.flatten(2).mean(2)  # (R, B): each view's own image error
        maps = maps / self.rotation_scale.view(-1, 1, 1, 1, 1).to(maps)
        amap = maps.mean(0)
        components = {f"rot{90 * r}": per_rotation[i] for i, r in enumerate(self.rotations)}
        if len(self.rotations) > 1:
            scale = self.rotation_mean.view(-1, 1).to(per_rotation)
            components["rot_normalized"] = (per_rotation / scale).mean(0)
        return ScoreOutput(
            image_score=amap.flatten(1).mean(1),
            anomaly_map=amap,
            extras={"input": x, "erased": erased, "restoration": restored, "error": amap},
            components=components,
        )

"""DRAEM's two sub-networks (layer plan of the official code, VitjanZ/DRAEM ``model_unet.py``).

Every convolution is 3x3 with padding 1, followed by batch norm and ReLU, except the last
one of each network. Widths are multiples of a base width ``w``:

* reconstructive: encoder blocks ``w, 2w, 4w, 8w, 8w`` (two convolutions each, 2x2 max
  pooling between them, 4 poolings); decoder of four stages, each a bilinear 2x upsampling
  and a convolution, then two convolutions that narrow to ``4w, 2w, w, w``; no skip
  connections; a final convolution back to the image channels (linear: no sigmoid).
* discriminative (U-Net): encoder blocks ``w, 2w, 4w, 8w, 8w, 8w`` (5 poolings); each of the
  five decoder stages upsamples, convolves to the width of the stage, concatenates the
  encoder block of the same resolution and applies two convolutions; the widths are
  ``8w, 4w, 2w, w, w``; a final convolution to 2 logits (normal, anomalous).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn

from reconad.methods.blocks import DoubleConv, conv_bn_relu, dcgan_init


def double_conv(c_in: int, c_out: int, c_mid: int | None = None) -> nn.Sequential:
    """Two 3x3 convolution + BN + ReLU layers: ``c_in -> c_mid -> c_out``."""
    return DoubleConv(c_in, c_out, c_mid)


def up_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Bilinear 2x upsampling (corners aligned) and one 3x3 convolution + BN + ReLU."""
    up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    return nn.Sequential(up, *conv_bn_relu(c_in, c_out))


class Encoder(nn.Module):
    """Blocks of two convolutions with 2x2 max pooling between them.

    Args:
        c_in: input channels.
        widths: output width of each block; ``len(widths) - 1`` poolings.
    """

    def __init__(self, c_in: int, widths: list[int]) -> None:
        super().__init__()
        chans = [c_in, *widths]
        self.blocks = nn.ModuleList(double_conv(a, b) for a, b in pairwise(chans))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> list[Tensor]:
        """The output of every block, finest first."""
        feats = [self.blocks[0](x)]
        for block in self.blocks[1:]:
            feats.append(block(self.pool(feats[-1])))
        return feats


class ReconstructiveNet(nn.Module):
    """Encoder-decoder without skips: an image with a synthetic anomaly -> the clean image.

    Args:
        channels: image channels (input and output).
        width: base width ``w`` (paper: 128).
    """

    depth = 4  # poolings: sides must be multiples of 16

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.encoder = Encoder(channels, [w, 2 * w, 4 * w, 8 * w, 8 * w])
        stages = []
        # (upsampling width, output width) of each decoder stage, coarsest first
        for c_up, c_out in ((8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w), (w, w)):
            c_prev = 8 * w if not stages else stages[-1][2]
            stages.append((c_prev, c_up, c_out))
        self.ups = nn.ModuleList(up_conv(c_prev, c_up) for c_prev, c_up, _ in stages)
        self.convs = nn.ModuleList(double_conv(c_up, c_out, c_up) for _, c_up, c_out in stages)
        self.head = nn.Conv2d(w, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder(x)[-1]
        for up, conv in zip(self.ups, self.convs, strict=True):
            h = conv(up(h))
        return self.head(h)


class DiscriminativeNet(nn.Module):
    """U-Net with skips: (augmented image, reconstruction) -> 2-class logits per pixel.

    Args:
        c_in: input channels (twice the image channels).
        width: base width ``w`` (paper: 64).
        classes: output logits (2: normal, anomalous).
    """

    depth = 5  # poolings: sides must be multiples of 32

    def __init__(self, c_in: int, width: int, classes: int = 2) -> None:
        super().__init__()
        w = width
        enc = [w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w]
        self.encoder = Encoder(c_in, enc)
        dec = [8 * w, 4 * w, 2 * w, w, w]  # decoder widths, coarsest first
        skips = enc[-2::-1]  # encoder widths met on the way up: 8w, 8w, 4w, 2w, w
        prev = [enc[-1], *dec[:-1]]
        self.ups = nn.ModuleList(up_conv(p, d) for p, d in zip(prev, dec, strict=True))
        self.convs = nn.ModuleList(double_conv(d + s, d) for d, s in zip(dec, skips, strict=True))
        self.head = nn.Conv2d(w, classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encoder(x)
        h = feats[-1]
        for up, conv, skip in zip(self.ups, self.convs, feats[-2::-1], strict=True):
            h = conv(torch.cat([up(h), skip], dim=1))
        return self.head(h)


#: The official initialisation (DCGAN's): see :func:`reconad.methods.blocks.dcgan_init`.
draem_init = dcgan_init


__all__ = [
    "DiscriminativeNet",
    "Encoder",
    "ReconstructiveNet",
    "double_conv",
    "draem_init",
    "up_conv",
]

"""ARNet's U-Net (Huang et al., IEEE TMM 2022): networks only.

[paper] Blocks of two (3x3 conv, BatchNorm, ReLU); encoder widths 64, 128, 256, 512, 512 with
four 2x2 max-pools; decoder bilinear x2 upsampling, concatenated skips, widths 256, 128, 64,
64; a final 3x3 conv to the image's channels. [ours] A sigmoid output (data in [0, 1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconad.methods.blocks import DoubleConv as _Block


class DoubleConv(_Block):
    """Two (3x3 conv without bias, BatchNorm, ReLU) layers: the U-Net's block."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, bias=False)


class UNet(nn.Module):
    """The ARNet U-Net for encoder widths ``w`` (5 values; the paper's: 64..512).

    Decoder widths follow the paper's pattern: w[2], w[1], w[0], w[0].
    """

    def __init__(self, c_in: int, c_out: int, w: tuple[int, ...]) -> None:
        super().__init__()
        if len(w) != 5:
            raise ValueError(f"ARNet's U-Net needs 5 encoder widths; got {w}")
        self.inc = DoubleConv(c_in, w[0])
        self.downs = nn.ModuleList(DoubleConv(w[i], w[i + 1]) for i in range(4))
        dec = [(w[4] + w[3], w[2]), (w[2] + w[2], w[1]), (w[1] + w[1], w[0]), (w[0] + w[0], w[0])]
        self.ups = nn.ModuleList(DoubleConv(a, b) for a, b in dec)
        self.outc = nn.Conv2d(w[0], c_out, 3, padding=1)

    def encode(self, x: Tensor) -> list[Tensor]:
        """The encoder's outputs at every scale, finest first (the last is the bottleneck)."""
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        return skips

    def forward(self, x: Tensor) -> Tensor:
        skips = self.encode(x)
        h = skips.pop()
        for up in self.ups:
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = up(torch.cat([skips.pop(), h], dim=1))
        return torch.sigmoid(self.outc(h))


__all__ = ["DoubleConv", "UNet"]

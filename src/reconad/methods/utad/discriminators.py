"""Multi-scale image discriminators for UTAD (least-squares GAN targets: real 1, fake 0).

Both published discriminators follow one pattern: ``scales`` copies of a stride-2 conv
stack, each applied to the image average-pooled (3x3, stride 2) once more than the last.

* IE-Net's image discriminator [official code]: four 4x4/2 convolutions of 32 channels,
  ReLU, instance norm after the 2nd and 3rd, 3 scales; the last convolution keeps 32
  output channels, every one a least-squares target.
* The Expert-Net's (MUNIT-style) [official code: MUNIT defaults]: widths 64, 128, 256, 512
  with LeakyReLU(0.2), no norm, reflection padding, a 1x1 convolution to one channel, 3
  scales.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _stack_ie(channels: int, dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, dim, 4, 2, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(dim, dim, 4, 2, 1),
        nn.InstanceNorm2d(dim),
        nn.ReLU(inplace=True),
        nn.Conv2d(dim, dim, 4, 2, 1),
        nn.InstanceNorm2d(dim),
        nn.ReLU(inplace=True),
        nn.Conv2d(dim, dim, 4, 2, 1),
    )


def _stack_munit(channels: int, dim: int, n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = channels
    for i in range(n_layers):
        c_out = dim * 2**i
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(c_in, c_out, 4, 2),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        c_in = c_out
    layers.append(nn.Conv2d(c_in, 1, 1))
    return nn.Sequential(*layers)


class MultiScaleDiscriminator(nn.Module):
    """``scales`` conv stacks on successively average-pooled copies of the image.

    Args:
        channels: image channels.
        dim: width of the first convolution.
        scales: number of image scales.
        kind: ``"ie"`` (IE-Net's constant-width stack) or ``"munit"`` (doubling widths).
        n_layers: stride-2 layers of the ``"munit"`` stack.
    """

    def __init__(
        self, channels: int, dim: int, scales: int = 3, kind: str = "munit", n_layers: int = 4
    ) -> None:
        super().__init__()
        if kind not in ("ie", "munit"):
            raise ValueError(f"discriminator kind must be 'ie' or 'munit'; got {kind!r}")
        if scales < 1:
            raise ValueError(f"a discriminator needs at least one scale; got {scales}")
        self.nets = nn.ModuleList(
            _stack_ie(channels, dim) if kind == "ie" else _stack_munit(channels, dim, n_layers)
            for _ in range(scales)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, net in enumerate(self.nets):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            outs.append(net(x))
        return outs


__all__ = ["MultiScaleDiscriminator"]

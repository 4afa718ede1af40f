"""DDR-ID's Deep SVDD-style LeNet encoder and its mirrored decoder: networks only.

[reconstructed] 5x5 convolutions without bias, BatchNorm without affine parameters,
LeakyReLU 0.01, 2x2 max-pools and a bias-free dense code (Deep SVDD's backbones); the decoder
is a dense layer to the deepest feature map, then nearest x2 upsampling and 5x5 convolutions
back to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _bn(c: int, norm: bool) -> nn.Module:
    return nn.BatchNorm2d(c, eps=1e-4, affine=False) if norm else nn.Identity()


class LeNetEncoder(nn.Module):
    """Deep SVDD-style encoder: (5x5 conv, BN, LeakyReLU, 2x2 max-pool) per width, dense."""

    def __init__(self, channels: int, widths: tuple[int, ...], rep_dim: int, size: tuple) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, (h, w) = channels, size
        for width in widths:
            layers += [nn.Conv2d(c, width, 5, padding=2, bias=False), _bn(width, True)]
            layers += [nn.LeakyReLU(0.01), nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c * h * w, rep_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).flatten(1))


class LeNetDecoder(nn.Module):
    """The mirrored decoder: dense to the deepest feature map, then upsample + 5x5 conv."""

    def __init__(
        self,
        channels: int,
        widths: tuple[int, ...],
        rep_dim: int,
        size: tuple[int, int],
        norm: bool = True,
        sigmoid: bool = True,
    ) -> None:
        super().__init__()
        self.sizes = [tuple(size)]
        for _ in widths:
            self.sizes.append((self.sizes[-1][0] // 2, self.sizes[-1][1] // 2))
        self.start = (widths[-1], *self.sizes[-1])
        self.fc = nn.Linear(rep_dim, widths[-1] * self.sizes[-1][0] * self.sizes[-1][1], False)
        self.norm0 = _bn(widths[-1], norm)
        outs = [*widths[:-1][::-1], channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 5, padding=2, bias=False)
            for c_in, c_out in zip(widths[::-1], outs, strict=True)
        )
        self.norms = nn.ModuleList(_bn(c, norm) for c in outs[:-1])
        self.sigmoid = sigmoid

    def forward(self, z: Tensor) -> Tensor:
        # z.shape[0], not len(z): an ONNX export traces it as the batch size, not a constant
        h = F.leaky_relu(self.norm0(self.fc(z).view(z.shape[0], *self.start)), 0.01)
        for i, conv in enumerate(self.convs):
            h = conv(F.interpolate(h, size=self.sizes[-2 - i], mode="nearest"))
            if i < len(self.norms):
                h = F.leaky_relu(self.norms[i](h), 0.01)
        return torch.sigmoid(h) if self.sigmoid else h


__all__ = ["LeNetDecoder", "LeNetEncoder"]

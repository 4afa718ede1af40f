"""The Expert-Net: UTAD's translation network between images and impressions.

[paper, official code (MUNIT-based)] Two domain coders, one for the image domain and one
for the impression domain. Each has

* a content encoder: 7x7 conv (``dim``), two 4x4/2 convs doubling the width (256 channels
  at 1/4 resolution for dim 64), ``n_res`` residual blocks; instance norm, ReLU;
* a detail (style) encoder: 7x7 conv, two 4x4/2 convs doubling the width, two more at that
  width, global average pooling and a 1x1 conv to a ``detail_dim`` (8) code; no norm;
* a decoder: ``n_res`` residual blocks with adaptive instance normalisation, then per
  downsampling step nearest x2 upsampling and a 5x5 conv halving the width with layer norm,
  and a 7x7 conv with tanh;
* an MLP (3 layers, ``mlp_dim`` units) from the detail code to every AdaIN scale and shift.

Reflection padding throughout; images enter and leave in [-1, 1] (the method converts).
Networks only: the losses are in ``losses.py`` and the training step in ``method.py``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def conv_block(c_in: int, c_out: int, k: int, s: int, norm: str, act: str) -> nn.Sequential:
    """Reflection pad, conv, then ``norm`` ("in", "ln", "none") and ``act`` ("relu", "tanh",
    "none")."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(k // 2 if s == 1 else 1),
        nn.Conv2d(c_in, c_out, k, s),
    ]
    if norm == "in":
        layers.append(nn.InstanceNorm2d(c_out))
    elif norm == "ln":
        layers.append(nn.GroupNorm(1, c_out))  # layer norm over (C, H, W), per-channel affine
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "tanh":
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs with instance norm and a skip connection (content encoder)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_block(dim, dim, 3, 1, "in", "relu"), conv_block(dim, dim, 3, 1, "in", "none")
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class AdaINResBlock(nn.Module):
    """Two 3x3 convs, each followed by adaptive instance norm with external scale/shift."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.conv1 = conv_block(dim, dim, 3, 1, "none", "none")
        self.conv2 = conv_block(dim, dim, 3, 1, "none", "none")

    def n_params(self) -> int:
        """AdaIN parameters this block consumes: (shift, scale) for each of its two norms."""
        return 4 * self.dim

    @staticmethod
    def _adain(x: Tensor, p: Tensor) -> Tensor:
        c = x.shape[1]
        shift, scale = p[:, :c, None, None], p[:, c:, None, None]
        return F.instance_norm(x) * scale + shift

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        d = 2 * self.dim
        h = F.relu(self._adain(self.conv1(x), params[:, :d]))
        return x + self._adain(self.conv2(h), params[:, d : 2 * d])


class DomainCoder(nn.Module):
    """Content encoder, detail encoder, AdaIN decoder and MLP of one domain."""

    def __init__(
        self, channels: int, dim: int, detail_dim: int, mlp_dim: int, n_res: int, n_down: int = 2
    ) -> None:
        super().__init__()
        content = [conv_block(channels, dim, 7, 1, "in", "relu")]
        d = dim
        for _ in range(n_down):
            content.append(conv_block(d, 2 * d, 4, 2, "in", "relu"))
            d *= 2
        content += [ResBlock(d) for _ in range(n_res)]
        self.content_encoder = nn.Sequential(*content)
        self.content_dim = d

        detail = [conv_block(channels, dim, 7, 1, "none", "relu")]
        e = dim
        for _ in range(2):
            detail.append(conv_block(e, 2 * e, 4, 2, "none", "relu"))
            e *= 2
        detail += [conv_block(e, e, 4, 2, "none", "relu") for _ in range(2)]
        detail += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(e, detail_dim, 1)]
        self.detail_encoder = nn.Sequential(*detail)

        self.res = nn.ModuleList(AdaINResBlock(d) for _ in range(n_res))
        up: list[nn.Module] = []
        for _ in range(n_down):
            up += [nn.Upsample(scale_factor=2), conv_block(d, d // 2, 5, 1, "ln", "relu")]
            d //= 2
        up.append(conv_block(d, channels, 7, 1, "none", "tanh"))
        self.upsample = nn.Sequential(*up)
        n_adain = sum(b.n_params() for b in self.res)
        self.mlp = nn.Sequential(
            nn.Linear(detail_dim, mlp_dim),
            nn.ReLU(inplace=True),
            nn.Linear(mlp_dim, mlp_dim),
            nn.ReLU(inplace=True),
            nn.Linear(mlp_dim, n_adain),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(content (B, 4*dim, H/4, W/4), detail (B, detail_dim))``."""
        return self.content_encoder(x), self.detail_encoder(x).flatten(1)

    def content(self, x: Tensor) -> Tensor:
        return self.content_encoder(x)

    def detail(self, x: Tensor) -> Tensor:
        return self.detail_encoder(x).flatten(1)

    def decode(self, content: Tensor, detail: Tensor) -> Tensor:
        """An image in [-1, 1] from a content map and a ``(B, detail_dim)`` detail code."""
        params = self.mlp(detail)
        h, i = content, 0
        for block in self.res:
            n = block.n_params()
            h = block(h, params[:, i : i + n])
            i += n
        return self.upsample(h)


class ExpertNet(nn.Module):
    """The two domain coders: ``image`` (x) and ``impression`` (m)."""

    def __init__(self, channels: int, dim: int, detail_dim: int, mlp_dim: int, n_res: int) -> None:
        super().__init__()
        self.image = DomainCoder(channels, dim, detail_dim, mlp_dim, n_res)
        self.impression = DomainCoder(channels, dim, detail_dim, mlp_dim, n_res)
        self.detail_dim = detail_dim

    def reconstruct(self, x: Tensor, m: Tensor) -> Tensor:
        """x_hat = image decoder(content(m), detail(x)): m's structure with x's detail."""
        return self.image.decode(self.impression.content(m), self.image.detail(x))


__all__ = ["AdaINResBlock", "DomainCoder", "ExpertNet", "ResBlock"]

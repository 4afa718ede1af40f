"""IE-Net, UTAD's impression extractor: networks only, no training logic.

[paper, official code] An inception-style convolutional autoencoder: every block runs four
parallel branches (1x1; 3x3; 5x5; 3x3 max-pool then 1x1), each a bias-free convolution,
BatchNorm and LeakyReLU(0.1), and concatenates them (4 x ``filters`` channels). Encoder:
blocks of widths f0, f0, f1, f2 with max-pools 4, 2, 2, 2 (a 512 x 8 x 8 latent at 256 x 256
for the published (32, 64, 128)); decoder: blocks f2, f1, f1, f0 with nearest upsampling
x2, x4, x2, x2, a bias-free 1x1 convolution and a sigmoid. The variational information
head maps the 2x2-max-pooled latent ("local features") through two 3x3 convolutions and a
global average pool to a global code (mean and log-variance, f2 = 128 dimensions).

[reconstructed] The mutual-information critics (the training code is not published): a
Deep InfoMax reading, with a global critic (an MLP on the global code and the flattened
local features, 3 hidden layers of min(128, code) units as in the published critic class)
and a local critic (1x1 convolutions scoring the code against each local feature vector).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _branch(c_in: int, c_out: int, k: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(3, 1, 1)] if pool else []
    layers += [
        nn.Conv2d(c_in, c_out, k, 1, k // 2, bias=False),
        nn.BatchNorm2d(c_out, eps=1e-3),
        nn.LeakyReLU(0.1, inplace=True),
    ]
    return nn.Sequential(*layers)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1, 3x3, 5x5, pool + 1x1), concatenated: 4 x ``filters``."""

    def __init__(self, c_in: int, filters: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [
                _branch(c_in, filters, 1),
                _branch(c_in, filters, 3),
                _branch(c_in, filters, 5),
                _branch(c_in, filters, 1, pool=True),
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class InfoHead(nn.Module):
    """Local features (max-pooled latent) and the global code's mean and log-variance."""

    def __init__(self, channels: int, code_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.to_global = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 3, 1, 1),
            nn.AdaptiveAvgPool2d(1),
        )
        self.mean = nn.Linear(channels, code_dim)
        self.log_var = nn.Linear(channels, code_dim)

    def forward(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        local = F.max_pool2d(latent, 2)
        g = self.to_global(local).flatten(1)
        return local, self.mean(g), self.log_var(g)


class IENet(nn.Module):
    """The impression extractor: x in [0, 1] -> impression m in [0, 1], same shape.

    Args:
        channels: image channels.
        filters: (f0, f1, f2); the published (32, 64, 128) give a 512-channel latent.
        info_head: build the variational information head (needed by the KL and MI terms).
    """

    #: total stride of the encoder (4 * 2 * 2 * 2); the info head pools once more
    stride = 32

    def __init__(
        self, channels: int, filters: tuple[int, int, int], info_head: bool = True
    ) -> None:
        super().__init__()
        if len(filters) != 3 or min(filters) < 1:
            raise ValueError(f"IE-Net needs 3 positive filter widths; got {filters}")
        f0, f1, f2 = (int(f) for f in filters)
        self.encoder = nn.Sequential(
            InceptionBlock(channels, f0),
            nn.MaxPool2d(4),
            InceptionBlock(4 * f0, f0),
            nn.MaxPool2d(2),
            InceptionBlock(4 * f0, f1),
            nn.MaxPool2d(2),
            InceptionBlock(4 * f1, f2),
            nn.MaxPool2d(2),
        )
        self.decoder = nn.Sequential(
            InceptionBlock(4 * f2, f2),
            nn.Upsample(scale_factor=2),
            InceptionBlock(4 * f2, f1),
            nn.Upsample(scale_factor=4),
            InceptionBlock(4 * f1, f1),
            nn.Upsample(scale_factor=2),
            InceptionBlock(4 * f1, f0),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(4 * f0, channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.latent_channels = 4 * f2
        self.code_dim = f2
        self.info = InfoHead(4 * f2, f2) if info_head else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(impression, latent)``."""
        latent = self.encoder(x)
        return self.decoder(latent), latent


class MICritics(nn.Module):
    """Deep InfoMax critics scoring (global code, local features) pairs [reconstructed].

    ``global_critic`` sees the code and all local features at once; ``local_critic`` scores
    the code against each local feature vector. Both return logits (real pairs high).
    """

    def __init__(self, code_dim: int, channels: int, local_hw: tuple[int, int]) -> None:
        super().__init__()
        hidden = min(128, code_dim)
        n_local = channels * local_hw[0] * local_hw[1]
        self.global_critic = nn.Sequential(
            nn.Linear(code_dim + n_local, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )
        self.local_critic = nn.Sequential(
            nn.Conv2d(code_dim + channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, code: Tensor, local: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B,)`` of the global critic and ``(B, 1, h, w)`` of the local one."""
        g = self.global_critic(torch.cat([code, local.flatten(1)], dim=1)).squeeze(1)
        code_map = code[:, :, None, None].expand(-1, -1, *local.shape[2:])
        return g, self.local_critic(torch.cat([code_map, local], dim=1))


__all__ = ["IENet", "InceptionBlock", "InfoHead", "MICritics"]

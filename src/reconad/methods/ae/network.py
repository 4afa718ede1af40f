"""The convolutional autoencoder of Bergmann et al. 2019 (VISAPP), Table 1: networks only.

Encoder convolutions 32 4x4/2, 32 4x4/2, 32 3x3/1, 64 4x4/2, 64 3x3/1, 128 4x4/2, 64 3x3/1,
32 3x3/1, then a ``latent``-channel convolution over the whole remaining (H/16 x W/16) field;
the decoder mirrors it with transposed convolutions and ends in a sigmoid [ours]; LeakyReLU
(0.2) after every layer but the code and the output.
"""

from __future__ import annotations

from torch import nn


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def bergmann_encoder(channels: int, code_kernel: tuple[int, int], latent: int) -> nn.Sequential:
    """Bergmann et al.'s encoder: image -> (latent, 1, 1)."""
    spec = [(32, 4, 2), (32, 4, 2), (32, 3, 1), (64, 4, 2), (64, 3, 1), (128, 4, 2), (64, 3, 1)]
    spec.append((32, 3, 1))
    layers: list[nn.Module] = []
    c_in = channels
    for c_out, k, s in spec:
        layers += [nn.Conv2d(c_in, c_out, k, s, padding=1), _act()]
        c_in = c_out
    layers.append(nn.Conv2d(c_in, latent, code_kernel, 1, padding=0))
    return nn.Sequential(*layers)


def bergmann_decoder(channels: int, code_kernel: tuple[int, int], latent: int) -> nn.Sequential:
    """The mirrored decoder: (latent, 1, 1) -> image in [0, 1]."""
    layers: list[nn.Module] = [nn.ConvTranspose2d(latent, 32, code_kernel, 1), _act()]
    spec = [(64, 3, 1), (128, 3, 1), (64, 4, 2), (64, 3, 1), (32, 4, 2), (32, 3, 1), (32, 4, 2)]
    c_in = 32
    for c_out, k, s in spec:
        conv = nn.ConvTranspose2d if s == 2 else nn.Conv2d
        layers += [conv(c_in, c_out, k, s, padding=1), _act()]
        c_in = c_out
    layers += [nn.ConvTranspose2d(c_in, channels, 4, 2, padding=1), nn.Sigmoid()]
    return nn.Sequential(*layers)


__all__ = ["bergmann_decoder", "bergmann_encoder"]

"""The networks of the two-stage RotNet autoencoder (Zhu 2023; [reconstructed]): networks only.

``conv_encoder`` is the RotNet trunk (and the refinement's encoder), ``conv_decoder`` its
mirror, ``Bottleneck`` the information-reduction module of the refinement (memory, noise or
KL); the rotation head is a plain ``nn.Linear`` built by the method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconad.methods.blocks import conv_bn_relu

if TYPE_CHECKING:
    from reconad.methods.rotnet_ae.method import RotNetAEConfig

BOTTLENECKS = ("memory", "noise", "kl")


def _block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return conv_bn_relu(c_in, c_out, stride, bias=False)


def conv_encoder(c_in: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Per width: a 3x3 block then a stride-2 3x3 block (side / 2**len(widths))."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += _block(c_in, w) + _block(w, w, 2)
        c_in = w
    return nn.Sequential(*layers)


def conv_decoder(c_in: int, widths: tuple[int, ...], c_out: int, extra: int = 0) -> nn.ModuleList:
    """Mirror of :func:`conv_encoder`: per width (reversed) x2 upsampling and a 3x3 block;
    a final 3x3 conv (seeing ``extra`` more channels at full size) to ``c_out`` channels."""
    mods = []
    for w in reversed(widths):
        mods.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), *_block(c_in, w)))
        c_in = w
    mods.append(nn.Conv2d(c_in + extra, c_out, 3, padding=1))
    return nn.ModuleList(mods)


def run_decoder(
    dec: nn.ModuleList, z: Tensor, extra: Tensor | None = None, logits: bool = False
) -> Tensor:
    """Apply a :func:`conv_decoder`; sigmoid output unless ``logits``."""
    h = z
    for m in dec[:-1]:
        h = m(h)
    if extra is not None:
        h = torch.cat([h, extra], 1)
    h = dec[-1](h)
    return h if logits else torch.sigmoid(h)


class Bottleneck(nn.Module):
    """Information reduction on a flat code ``(B, D)``; returns (code, auxiliary loss)."""

    def __init__(self, kind: str, dim: int, cfg: RotNetAEConfig) -> None:
        super().__init__()
        if kind not in BOTTLENECKS:
            raise ValueError(f"unknown bottleneck {kind!r}; choose from {BOTTLENECKS}")
        self.kind, self.cfg = kind, cfg
        if kind == "memory":
            self.memory = nn.Parameter(torch.randn(cfg.memory_size, dim) / dim**0.5)
        if kind == "kl":
            self.logvar = nn.Linear(dim, dim)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        zero = z.new_zeros(())
        if self.kind == "noise":
            z = torch.tanh(z)
            if self.training:
                z = z + self.cfg.noise_std * torch.randn_like(z)
            return z, zero
        if self.kind == "kl":
            logvar = self.logvar(z).clamp(-10, 10)
            kl = 0.5 * (z.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
            if self.training:
                z = z + (0.5 * logvar).exp() * torch.randn_like(z)
            return z, self.cfg.kl_weight * kl
        w = self.address(z)
        entropy = -(w * torch.log(w + 1e-12)).sum(1).mean()
        return w @ self.memory, self.cfg.entropy_weight * entropy

    def address(self, z: Tensor) -> Tensor:
        """MemAE weights ``(B, M)``: softmax of z . m_i, hard shrinkage, L1 renormalisation.

        The best-matching item always survives the shrinkage: otherwise a flat softmax (all
        weights below the threshold, as at initialisation) zeroes the code and its gradient.
        """
        w = F.softmax(z @ self.memory.T, dim=1)
        lam = self.cfg.shrink / self.cfg.memory_size
        shrunk = F.relu(w - lam) * w / ((w - lam).abs() + 1e-12)
        w = torch.where(w >= w.max(1, keepdim=True).values, w, shrunk)
        return w / w.sum(1, keepdim=True)


__all__ = ["BOTTLENECKS", "Bottleneck", "conv_decoder", "conv_encoder", "run_decoder"]

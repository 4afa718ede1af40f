"""Convolutional autoencoders: the plain L2 autoencoder and the SSIM autoencoder.

Both use the architecture of Bergmann et al. 2019, "Improving Unsupervised Defect
Segmentation by Applying Structural Similarity to Autoencoders" (VISAPP), Table 1: encoder
convolutions 32 4x4/2, 32 4x4/2, 32 3x3/1, 64 4x4/2, 64 3x3/1, 128 4x4/2, 64 3x3/1,
32 3x3/1, then a d-channel convolution over the whole remaining (H/16 x W/16) field to a
d-dimensional latent code (d = 100); the decoder mirrors it with transposed convolutions;
LeakyReLU(0.2) after every layer but the code and the output. Training as in the paper:
Adam, lr 2e-4, weight decay 1e-5, batch 128.

Our reading where the paper is silent [reconstructed]: He initialisation (see
``he_init``); a sigmoid output layer (inputs are in [0, 1]); the image score is the mean
of the anomaly map (the paper evaluates segmentation only); the paper's 128x128 inputs
become any size that is a multiple of 16, with the code convolution's kernel equal to the
remaining field (8x8 at 128x128).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from kornia.metrics import ssim
from torch import Tensor, nn

from reconad.methods.base import Method, OptimGroup, ScoreOutput, Stage, register


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


def he_init(module: nn.Module, slope: float = 0.2) -> None:
    """He initialisation for LeakyReLU stacks, zero biases.

    PyTorch's default (uniform, a = sqrt(5)) shrinks the signal through the 18 layers of
    this network without normalisation; such a network first learns to output the mean
    image and only slowly leaves it. Measured on Fashion-MNIST class 0, 15 epochs: training
    loss 0.027 (default) vs 0.012 (He), AUROC 88.3 vs 90.6.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass
class AEConfig:
    """Hyper-parameters of the autoencoders (Bergmann et al. 2019 defaults).

    ``epochs`` is ours: the paper trains on many random 128x128 patches instead.
    """

    latent_dim: int = 100
    lr: float = 2e-4
    weight_decay: float = 1e-5
    batch_size: int = 128
    epochs: int = 30
    ssim_window: int = 11


class _BergmannAE(Method):
    Config = AEConfig
    size_multiple = 16
    min_size = 16
    channels_last = True  # CIFAR-10, 2 threads: 1,460 -> 1,696 img/s

    def __init__(self, config: AEConfig, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__(config, channels, image_size)
        h, w = self.image_size
        if h % 16 or w % 16:
            raise ValueError(f"{self.name} needs sides that are multiples of 16; got {h}x{w}")
        code = (h // 16, w // 16)
        self.encoder = bergmann_encoder(channels, code, config.latent_dim)
        self.decoder = bergmann_decoder(channels, code, config.latent_dim)
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def stages(self) -> list[Stage]:
        c = self.config
        group = OptimGroup([self], lr=c.lr, weight_decay=c.weight_decay)
        return [Stage("train", c.epochs, {"model": group}, batch_size=c.batch_size)]

    def residual_map(self, x: Tensor, x_hat: Tensor) -> Tensor:
        raise NotImplementedError

    def reconstruct(self, x: Tensor) -> Tensor:
        """The autoencoder's output x_hat."""
        return self(x)

    def features(self, x: Tensor) -> Tensor:
        """The encoder's latent code, ``(B, latent_dim)`` (already global: 1x1 spatially)."""
        return self.encoder(x).flatten(1)

    def score(self, x: Tensor) -> ScoreOutput:
        x_hat = self(x)
        amap = self.residual_map(x, x_hat)
        return ScoreOutput(
            image_score=amap.flatten(1).mean(1),
            anomaly_map=amap,
            extras={"input": x, "reconstruction": x_hat, "error": amap},
        )


@register
class AutoEncoder(_BergmannAE):
    """Plain convolutional autoencoder trained with the L2 loss.

    Anomaly map: squared error per pixel, averaged over channels; image score: its mean
    (the image's mean squared reconstruction error).
    """

    name = "ae"
    summary = "plain convolutional autoencoder, L2 loss (Bergmann et al. 2019 architecture)"

    def training_step(self, batch: Tensor, stage: str) -> Tensor:
        return F.mse_loss(self(batch), batch)

    def residual_map(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return (x - x_hat).pow(2).mean(1, keepdim=True)


@register
class SSIMAutoEncoder(_BergmannAE):
    """SSIM autoencoder (Bergmann et al. 2019): trained to maximise structural similarity.

    Loss: 1 - mean SSIM (Gaussian window 11, sigma 1.5, as in the paper). Anomaly map:
    1 - SSIM per pixel, averaged over channels; image score: its mean [reconstructed].
    """

    name = "ssim_ae"
    summary = "SSIM autoencoder (Bergmann et al. 2019): SSIM loss and 1 - SSIM maps"

    def _window(self) -> int:
        # An SSIM window larger than the image is meaningless; keep it odd and <= the side.
        side = min(self.image_size)
        w = min(self.config.ssim_window, side if side % 2 else side - 1)
        return max(3, w)

    def training_step(self, batch: Tensor, stage: str) -> Tensor:
        return 1.0 - ssim(self(batch), batch, self._window()).mean()

    def residual_map(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return (1.0 - ssim(x_hat, x, self._window())).mean(1, keepdim=True).clamp_min(0.0)


__all__ = ["AEConfig", "AutoEncoder", "SSIMAutoEncoder", "bergmann_decoder", "bergmann_encoder"]

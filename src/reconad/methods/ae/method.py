"""Convolutional autoencoders: the plain L2 autoencoder and the SSIM autoencoder (the contract;
the networks are in ``network.py``, the card in ``README.md``).

Both use the architecture of Bergmann et al. 2019, "Improving Unsupervised Defect
Segmentation by Applying Structural Similarity to Autoencoders" (VISAPP), Table 1: encoder
convolutions 32 4x4/2, 32 4x4/2, 32 3x3/1, 64 4x4/2, 64 3x3/1, 128 4x4/2, 64 3x3/1,
32 3x3/1, then a d-channel convolution over the whole remaining (H/16 x W/16) field to a
d-dimensional latent code (d = 100); the decoder mirrors it with transposed convolutions;
LeakyReLU(0.2) after every layer but the code and the output. Training as in the paper:
Adam, lr 2e-4, weight decay 1e-5, batch 128.

Our reading where the paper is silent [reconstructed]: He initialisation (see
``blocks.he_init``); a sigmoid output layer (inputs are in [0, 1]); the image score is the mean
of the anomaly map (the paper evaluates segmentation only); the paper's 128x128 inputs
become any size that is a multiple of 16, with the code convolution's kernel equal to the
remaining field (8x8 at 128x128).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from kornia.metrics import ssim
from torch import Tensor

from reconad.methods.ae.network import bergmann_decoder, bergmann_encoder
from reconad.methods.base import Method, OptimGroup, ScoreOutput, Stage, register
from reconad.methods.blocks import he_init
from reconad.methods.maps import mse_map, ssim_map, ssim_window


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
        return mse_map(x, x_hat)


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
        return ssim_window(self.image_size, self.config.ssim_window)

    def training_step(self, batch: Tensor, stage: str) -> Tensor:
        return 1.0 - ssim(self(batch), batch, self._window()).mean()

    def residual_map(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return ssim_map(x, x_hat, self._window())


__all__ = ["AEConfig", "AutoEncoder", "SSIMAutoEncoder"]

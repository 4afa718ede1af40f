"""The Bergmann et al. 2019 autoencoders: importing this package registers ``ae`` and ``ssim_ae``.

Layout: ``network.py`` (encoder and decoder), ``method.py`` (config, losses, score);
``README.md`` is the methods' card.
"""

from reconad.methods.ae.method import AEConfig, AutoEncoder, SSIMAutoEncoder
from reconad.methods.ae.network import bergmann_decoder, bergmann_encoder
from reconad.methods.blocks import he_init

__all__ = [
    "AEConfig",
    "AutoEncoder",
    "SSIMAutoEncoder",
    "bergmann_decoder",
    "bergmann_encoder",
    "he_init",
]

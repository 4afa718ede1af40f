"""Two-stage RotNet autoencoder (Zhu 2023; reconstructed from a thesis abstract): importing
this package registers ``rotnet_ae``.

Layout: ``network.py`` (encoder, decoder, information-reduction bottleneck), ``method.py``
(config, presets, stages, losses, multi-view score); ``README.md`` is the method's card.
"""

from reconad.methods.rotnet_ae.method import ROT_VIEWS, RotNetAE, RotNetAEConfig
from reconad.methods.rotnet_ae.network import (
    BOTTLENECKS,
    Bottleneck,
    conv_decoder,
    conv_encoder,
    run_decoder,
)

__all__ = [
    "BOTTLENECKS",
    "ROT_VIEWS",
    "Bottleneck",
    "RotNetAE",
    "RotNetAEConfig",
    "conv_decoder",
    "conv_encoder",
    "run_decoder",
]

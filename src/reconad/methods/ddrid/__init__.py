"""DDR-ID (Lin et al., arXiv 2007.09431; reconstructed from the published abstract): importing
this package registers ``ddrid``.

Layout: ``network.py`` (the LeNet-type encoder and decoder), ``method.py`` (config, presets,
latent constraints, losses, stages, scores); ``README.md`` is the method's card.
"""

from reconad.methods.ddrid.method import (
    DDRID,
    LATENT_CONSTRAINTS,
    SCORES,
    DDRIDConfig,
    LatentConstraint,
    register_latent_constraint,
)
from reconad.methods.ddrid.network import LeNetDecoder, LeNetEncoder

__all__ = [
    "DDRID",
    "LATENT_CONSTRAINTS",
    "SCORES",
    "DDRIDConfig",
    "LatentConstraint",
    "LeNetDecoder",
    "LeNetEncoder",
    "register_latent_constraint",
]

"""DRAEM (Zavrtanik, Kristan, Skocaj; ICCV 2021): importing this package registers ``draem``.

Layout: ``network.py`` (the reconstructive and discriminative sub-networks),
``reconad/synthetic.py`` (Perlin-mask anomalies from the batch itself, no external textures),
``method.py`` (config, presets, losses, training step and score); ``README.md`` is the
method's card.
"""

from reconad.methods.draem.method import DRAEM, DRAEMConfig

__all__ = ["DRAEM", "DRAEMConfig"]

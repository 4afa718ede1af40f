"""ARNet (Huang et al., IEEE TMM 2022): importing this package registers ``arnet``.

Layout: ``network.py`` (the U-Net), ``method.py`` (erasers, config, presets, loss, score);
``README.md`` is the method's card.
"""

from reconad.methods.arnet.method import ERASERS, ARNet, ARNetConfig
from reconad.methods.arnet.network import DoubleConv, UNet

__all__ = ["ERASERS", "ARNet", "ARNetConfig", "DoubleConv", "UNet"]

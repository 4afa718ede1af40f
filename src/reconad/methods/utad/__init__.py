"""UTAD (Liu, Zhuang, Lu; arXiv 2103.11671): importing this package registers ``utad``.

Layout: ``ie_net.py`` (impression extractor and MI critics), ``expert_net.py`` (the
translation network), ``discriminators.py``, ``losses.py`` (losses and the anomaly map),
``config.py`` (hyper-parameters and presets), ``method.py`` (training steps and scoring);
``README.md`` is the method's card.
"""

from reconad.methods.utad.method import UTAD, UTADConfig

__all__ = ["UTAD", "UTADConfig"]

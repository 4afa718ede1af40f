"""Adversarial-example detection: can an anomaly detector trained on clean images flag
adversarial ones? (Deep SVDD's and DDR-ID's GTSRB experiment, generalised.)

Protocol, per data set (``reconad benchmark adversarial``, :mod:`reconad.protocols.adversarial`):

1. Train a small CNN classifier on the whole labelled training split (kept, and reused on
   a resumed run); report its clean test accuracy.
2. Fit the detector on clean training images of one class (``fit_on="one-class"``, each
   class in turn) or of all classes (``"all"``, a seeded sample).
3. Take that class's (or a sample of all) test images that the classifier gets right and
   craft an adversarial version of each with FGSM and PGD (L-infinity) at each epsilon.
   Images are rounded to 8 bits afterwards, as any saved image would be; success is judged
   on the rounded images. Attack success rate = misclassified / originally correct.
4. Detection AUROC: clean originals (normal) vs their successful adversarial versions
   (anomalous); also reported against all perturbed images, successful or not.

Attacks come from the Adversarial Robustness Toolbox (``adversarial-robustness-toolbox``,
pure Python, needs no torchvision) when it is installed, else from the plain-torch FGSM
and PGD below (``backend="torch"``), which follow the same definitions. torchattacks was
not used: it requires torchvision, whose wheels do not load against the CPU torch here.
Results go to one JSON per (target, seed), rewritten after every (attack, epsilon), and
each fitted detector is saved, so an interrupted run continues where it stopped.
"""

from reconad.adversarial.attacks import (
    ATTACKS,
    BACKENDS,
    art_available,
    attack,
    fgsm,
    parse_epsilons,
    pgd,
    resolve_backend,
    to_uint8,
)
from reconad.adversarial.classifier import SmallCNN, get_classifier, predict, train_classifier

__all__ = [
    "ATTACKS",
    "BACKENDS",
    "SmallCNN",
    "art_available",
    "attack",
    "fgsm",
    "get_classifier",
    "parse_epsilons",
    "pgd",
    "predict",
    "resolve_backend",
    "to_uint8",
    "train_classifier",
]

"""The one-class protocol: which images train, which calibrate, which test.

Normal = the chosen class(es). Training uses that class's images from the official training
split only, minus a held-out fraction kept for calibration (thresholds, score
normalisation); the test set is the whole official test split, labelled normal/anomalous.
Test labels are only ever read by the metric functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reconad.data.imageset import DataError, ImageSet


@dataclass
class OneClassSplit:
    """Train, held-out validation normals, and labelled test images of one protocol run."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    test_anomalous: np.ndarray  # bool (N_test,), True = anomalous
    normal_classes: list[int]


def holdout_split(
    images: ImageSet, fraction: float = 0.1, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """Split normal images into (train, held-out) with a seeded permutation.

    Raises:
        DataError: if the fraction is outside [0, 1) or leaves no training image.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"held-out fraction must be in [0, 1); got {fraction}")
    n = len(images)
    n_val = int(round(n * fraction))
    if fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    if n - n_val < 1:
        raise DataError(f"{n} normal image(s) leave nothing to train on after holding out")
    perm = np.random.default_rng(seed).permutation(n)
    return images.subset(np.sort(perm[n_val:])), images.subset(np.sort(perm[:n_val]))


def one_class_split(
    train: ImageSet,
    test: ImageSet,
    normal: int | list[int],
    val_fraction: float = 0.1,
    seed: int = 0,
) -> OneClassSplit:
    """Build the one-class protocol for ``normal`` class index(es).

    Raises:
        DataError: if labels are missing, a class has no training images, or the test
            split lacks normal or anomalous images.
    """
    normal_classes = [normal] if isinstance(normal, int) else list(normal)
    if train.labels is None or test.labels is None:
        raise DataError("the one-class protocol needs labelled train and test splits")
    in_train = np.isin(train.labels, normal_classes)
    if not in_train.any():
        raise DataError(f"no training images of class(es) {normal_classes}")
    fit, val = holdout_split(train.subset(in_train), val_fraction, seed)
    anomalous = ~np.isin(test.labels, normal_classes)
    if anomalous.all() or not anomalous.any():
        kind = "normal" if anomalous.all() else "anomalous"
        raise DataError(f"the test split has no {kind} images for class(es) {normal_classes}")
    return OneClassSplit(fit, val, test, anomalous, normal_classes)


def parse_classes(spec: str, n_classes: int) -> list[int]:
    """Parse a class selection such as ``"0-9"``, ``"3"``, ``"0,2,5-7"`` or ``"all"``.

    Raises:
        ValueError: for a malformed spec or a class outside ``[0, n_classes)``.
    """
    if spec.strip().lower() == "all":
        return list(range(n_classes))
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"cannot read class selection {spec!r} (try '0-9' or '1,3')") from None
    bad = [c for c in out if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"class(es) {bad} outside 0-{n_classes - 1}")
    return sorted(set(out))

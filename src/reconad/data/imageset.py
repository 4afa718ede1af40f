"""`ImageSet`: the one in-memory form every reader produces and every method consumes.

Images are kept as uint8 ``(N, C, H, W)`` so that a full data set stays small (60,000 MNIST
images are 47 MB) and conversion to float happens per batch. Readers that load images of
varying size resize them to one size and keep each original size, so that anomaly maps can
be returned at, and pixel metrics computed at, the original resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class DataError(ValueError):
    """A data set, file or mask is unusable; the message names the file and the problem."""


@dataclass
class ImageSet:
    """A batch of same-sized images with optional labels, masks and provenance.

    Attributes:
        images: uint8 array ``(N, C, H, W)``, C is 1 (gray) or 3 (RGB).
        labels: int64 array ``(N,)`` indexing ``class_names``, or None when unlabelled.
            For semantic data sets this is the class; for industrial (MVTec-style) sets it is
            the defect type, with ``"good"`` for defect-free images.
        class_names: names of the label values, in index order.
        paths: source file of each image (None for images read from archives of arrays).
        masks: per image a bool array ``(h, w)`` at the image's *original* size, or None
            when the image has no ground-truth mask (defect-free images, or no masks given).
        orig_sizes: per image its original ``(h, w)`` before resizing.
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    paths: list[str] | None = None
    masks: list[np.ndarray | None] | None = None
    orig_sizes: list[tuple[int, int]] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        imgs = self.images
        if not isinstance(imgs, np.ndarray) or imgs.dtype != np.uint8 or imgs.ndim != 4:
            raise DataError(
                f"ImageSet.images must be a uint8 array (N, C, H, W); got "
                f"{type(imgs).__name__} {getattr(imgs, 'dtype', '')} {getattr(imgs, 'shape', '')}"
            )
        if imgs.shape[1] not in (1, 3):
            raise DataError(f"images must have 1 or 3 channels; got shape {imgs.shape}")
        n = len(imgs)
        for name in ("labels", "paths", "masks", "orig_sizes"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(f"ImageSet.{name} has {len(value)} entries for {n} images")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.orig_sizes is None:
            self.orig_sizes = [tuple(imgs.shape[2:])] * n  # type: ignore[list-item]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """The (H, W) every image in the set has."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def is_anomalous(self) -> np.ndarray:
        """Bool ``(N,)`` for industrial sets: label is not ``"good"``.

        Raises:
            DataError: if the set has no labels or no ``"good"`` class.
        """
        if self.labels is None or not self.class_names or "good" not in self.class_names:
            raise DataError("is_anomalous needs labels with a 'good' class (MVTec-style sets)")
        return self.labels != self.class_names.index("good")

    def unlabelled(self) -> ImageSet:
        """The images without their truth (labels, class names, masks): what a detector is
        given to score. Paths and original sizes stay (maps go back to each image's size).
        The label fence of ``reconad.evaluate``: truth reaches the metrics only."""
        if self.labels is None and self.masks is None and self.class_names is None:
            return self
        return ImageSet(
            images=self.images, paths=self.paths, orig_sizes=self.orig_sizes, meta=dict(self.meta)
        )

    def subset(self, index: np.ndarray | list[int]) -> ImageSet:
        """The images at ``index`` (ints or a bool mask), with every per-image field kept."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)

        def pick(seq):
            return None if seq is None else [seq[i] for i in idx]

        return ImageSet(
            images=self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            class_names=self.class_names,
            paths=pick(self.paths),
            masks=pick(self.masks),
            orig_sizes=pick(self.orig_sizes),
            meta=dict(self.meta),
        )

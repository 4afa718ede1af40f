"""The report's gallery: which test images to show, and their panels.

Three groups, read at the model's own threshold (the one set on held-out normals): the
most confident detections (defects scored highest above it), the missed defects (lowest
scored at or below it) and the false alarms (good images scored highest above it). Each
image gets its input, its map over it with the ground-truth mask outlined, and the
method's named intermediate images (restoration, segmentation, ...) from
``Detector.explain``, rescored for the chosen images only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from reconad.report.figures import array_uri, colour, overlay, to_rgb
from reconad.report.plots import MAP_KEYS, SIGNED_KEYS

#: extras drawn as heat maps besides plots.MAP_KEYS (DRAEM's segmentation is its map)
HEAT_KEYS = (*MAP_KEYS, "segmentation")

#: (group, title with a threshold, title without one)
GROUPS = [
    ("detections", "Most confident detections", "Highest-scoring defective images"),
    ("missed", "Missed defects", "Lowest-scoring defective images"),
    ("false_alarms", "False alarms", "Highest-scoring good images"),
]


@dataclass
class GalleryItem:
    """One shown test image: where it is from, how it scored, and its panels."""

    index: int
    name: str
    kind: str
    score: float
    flagged: bool | None
    p_value: float | None = None
    panels: list[tuple[str, str]] = field(default_factory=list)  # (label, data URI)


@dataclass
class Gallery:
    """The three groups: per group its items and how many images it holds in all."""

    groups: dict[str, list[GalleryItem]]
    totals: dict[str, int]
    threshold: float | None
    map_range: tuple[float, float] | None
    note: str = ""


def pick(
    labels: np.ndarray, scores: np.ndarray, threshold: float | None, k: int = 4
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Indices to show per group (at most ``k`` each) and each group's full size.

    Without a threshold, detections and false alarms are the highest-scoring defective and
    good images, missed defects the lowest-scoring defective ones.
    """
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, float)
    has_t = threshold is not None and np.isfinite(threshold)
    above = scores > threshold if has_t else np.ones(len(scores), bool)
    below = ~above if has_t else np.ones(len(scores), bool)
    sets = {
        "detections": np.flatnonzero(labels & above),
        "missed": np.flatnonzero(labels & below),
        "false_alarms": np.flatnonzero(~labels & above),
    }
    picks = {}
    for g, idx in sets.items():
        order = np.argsort(scores[idx], kind="stable")
        order = order if g == "missed" else order[::-1]
        picks[g] = [int(i) for i in idx[order][:k]]
    return picks, {g: int(len(v)) for g, v in sets.items()}


def _resize(a: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if a.shape == hw:
        return a
    img = Image.fromarray(a.astype(np.uint8) * 255 if nearest else a.astype(np.float32))
    out = np.asarray(img.resize(hw[::-1], Image.NEAREST if nearest else Image.BILINEAR))
    return out > 127 if nearest else out


def build_gallery(det: Any, test: Any, scores: np.ndarray, k: int = 4) -> Gallery:
    """Choose the gallery's images from ``scores`` (the evaluation's, one per test image)
    and draw their panels with one ``explain`` pass over those images only."""
    t = float(det.threshold_)
    threshold = t if np.isfinite(t) else None
    labels = np.asarray(test.is_anomalous, bool)
    picks, totals = pick(labels, scores, threshold, k)
    chosen = sorted({i for idx in picks.values() for i in idx})
    if not chosen:
        return Gallery({g: [] for g in picks}, totals, threshold, None)
    sub = test.subset(chosen)
    ex = det.explain(sub, n=len(chosen))
    h, w = sub.images.shape[2:]
    maps = None if ex["maps"] is None else [_resize(m, (h, w)) for m in ex["maps"]]
    extras = {k2: v for k2, v in ex["extras"].items() if k2 != "input"}
    rng = None
    if maps is not None:
        vals = np.concatenate([m.ravel() for m in maps])
        rng = (min(0.0, float(vals.min())), max(float(np.percentile(vals, 99.9)), 1e-12))
    scales = {
        key: (0.0, max(float(np.percentile(v, 99.9)), 1e-12))
        for key, v in extras.items()
        if key in HEAT_KEYS
    }
    pvals = det.p_values_of(scores[chosen]) if len(getattr(det, "val_scores_", ())) else None
    items: dict[int, GalleryItem] = {}
    for j, i in enumerate(chosen):
        rgb = to_rgb(sub.images[j])
        m = sub.masks[j] if sub.masks else None
        mask = None if m is None else _resize(m, (h, w), nearest=True)
        panels = [("input", array_uri(rgb))]
        if maps is not None:
            panels.append(("map, mask outlined", array_uri(overlay(rgb, maps[j], *rng, mask))))
        for key, v in extras.items():
            panels.append((key, array_uri(_extra_panel(key, v[j], (h, w), scales.get(key)))))
        path = (test.paths or [None] * len(test))[i]
        kind = test.class_names[int(test.labels[i])] if test.class_names else "?"
        items[i] = GalleryItem(
            index=i,
            name=_short(path, i),
            kind=kind,
            score=float(scores[i]),
            flagged=None if threshold is None else bool(scores[i] > threshold),
            p_value=None if pvals is None else float(pvals[j]),
            panels=panels,
        )
    groups = {g: [items[i] for i in idx] for g, idx in picks.items()}
    return Gallery(groups, totals, threshold, rng)


def _extra_panel(
    key: str, img: np.ndarray, hw: tuple[int, int], scale: tuple[float, float] | None
) -> np.ndarray:
    """An extra as RGB at the input's size: a heat map, a signed image, or an image."""
    if key in HEAT_KEYS or key in SIGNED_KEYS:
        plane = img.mean(axis=0) if img.ndim == 3 else img
        plane = _resize(np.asarray(plane, np.float32), hw)
        if key in SIGNED_KEYS:
            top = max(float(np.abs(plane).max()), 1e-12)
            return colour(plane, -top, top, "coolwarm")
        return colour(plane, *(scale or (0.0, max(float(plane.max()), 1e-12))))
    rgb = to_rgb(img)
    if rgb.shape[:2] != hw:
        rgb = np.asarray(Image.fromarray(rgb).resize(hw[::-1], Image.BILINEAR))
    return rgb


def _short(path: str | None, i: int) -> str:
    """``type/file`` of a test image's path (its folder and name), or its index."""
    if not path:
        return f"image {i}"
    parts = str(path).replace("\\", "/").split("/")
    return "/".join(parts[-2:])

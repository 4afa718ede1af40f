"""Evaluation: the only place where test truth (labels, masks) meets a detector's scores.

The label fence: images to score carry no labels. Each function here strips the truth off
the test set (:meth:`ImageSet.unlabelled`) before the detector sees it, scores the bare
images, and hands the truth to the metric functions only. The detector strips whatever it
is given as well, so a method cannot read a test label even when called directly.

- :func:`evaluate`: an MVTec-style test set (industrial protocol, ``reconad test``): image
  AUROC (also per defect type), pixel AUROC and AUPRO at each mask's own resolution.
- :func:`evaluate_one_class`: a test set whose anomalous images are flagged (one-class
  protocol): AUROC, AP, F1, the calibrated rates, and each alternative score's AUROC.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from reconad.data.imageset import ImageSet
from reconad.metrics import image_metrics, pixel_metrics
from reconad.scoring import ScoringSpec


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * float(v)


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return _pct(image_metrics(labels, scores)["auroc"])


def _image_entries(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """AUROC, AP, the oracle's F1 and the TPR at 5% FPR of image scores, in %."""
    m = image_metrics(labels, scores)
    return {
        "auroc": _pct(m["auroc"]),
        "ap": _pct(m["ap"]),
        "f1_max_oracle": _pct(m["f1_max"]),
        "tpr_at_5fpr": _pct(m["tpr_at_5fpr"]),
    }


def _rates(threshold: float, flagged: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """A calibrated threshold and the test FPR and TPR (in %) of what it flags."""
    return {
        "threshold": float(threshold),
        "test_fpr": _pct(flagged[~truth].mean()),
        "test_tpr": _pct(flagged[truth].mean()),
    }


def industrial_metrics(
    test: ImageSet,
    scores: np.ndarray,
    maps: list[np.ndarray] | None,
    threshold: float = float("nan"),
    pixel_threshold: float | None = None,
) -> dict[str, Any]:
    """Image and pixel metrics (in %) of scores and original-size maps on an MVTec-style set.

    Args:
        test: the labelled test set (``class_names`` with ``"good"``, masks at original size).
        scores: ``(N,)`` image scores, higher = more anomalous.
        maps: per image a map at its original size, or None (method without maps).
        threshold: the image threshold from held-out normals (NaN: no calibrated rates).
        pixel_threshold: the pixel threshold from held-out normals, if any.
    """
    labels = test.is_anomalous.astype(int)
    good = test.class_names.index("good")
    res = _image_entries(labels, scores)
    per_type, counts = {}, {}
    for i, name in enumerate(test.class_names):
        counts[name] = int((test.labels == i).sum())
        if i != good and counts[name]:
            sel = (test.labels == i) | (test.labels == good)
            per_type[name] = _auroc(labels[sel], scores[sel])
    res.update(auroc_per_type=per_type, n_per_type=counts)
    res.update(n_test=len(test), n_anomalous=int(labels.sum()))
    if np.isfinite(threshold):
        res["calibrated"] = _rates(threshold, scores > threshold, labels == 1)
    res.update(pixel_auroc=None, aupro=None)
    masks = test.masks or [None] * len(test)
    known = [i for i in range(len(test)) if test.labels[i] == good or masks[i] is not None]
    if maps is None:
        res["pixel_note"] = "the method produces no maps"
    elif not any(m is not None for m in masks):
        res["pixel_note"] = "the test set has no ground-truth masks"
    else:
        gts = [np.zeros(test.orig_sizes[i], bool) if masks[i] is None else masks[i] for i in known]
        sub = [maps[i] for i in known]
        res.update({k: _pct(v) for k, v in pixel_metrics(gts, sub).items()})
        res.update(
            n_pixel_images=len(known),
            n_empty_masks=sum(1 for i in known if labels[i] and not masks[i].any()),
            n_pixels=int(sum(g.size for g in gts)),
            n_positive_pixels=int(sum(g.sum() for g in gts)),
        )
        if pixel_threshold is not None:
            flag = np.concatenate([(a > pixel_threshold).ravel() for a in sub])
            truth = np.concatenate([g.ravel() for g in gts])
            res["calibrated_pixel"] = _rates(pixel_threshold, flag, truth)
    res["scores"] = [float(s) for s in scores]
    return res


def evaluate(detector, test: ImageSet, pixel_threshold: float | None = None) -> dict[str, Any]:
    """Score an MVTec-style test set with a fitted detector; the industrial metrics in %.

    What ``reconad test`` and the industrial protocol both call. The detector sees the
    images only. Adds ``labels`` (1 = defect, beside ``scores``, for curves),
    ``score_seconds`` (scoring, and resizing maps back to each image's size),
    ``metric_seconds``, and ``peak_rss_mb_scoring``: the peak RSS once scoring is done,
    before the full-resolution pixel metrics (which can take gigabytes) run.
    """
    from reconad.detector import resize_maps
    from reconad.protocols.provenance import peak_rss_mb

    images = test.unlabelled()
    t0 = time.perf_counter()
    ex = detector.explain(images, n=0, map_scores=True)  # also map_max / map_topk AUROCs
    maps = None if ex["maps"] is None else resize_maps(ex["maps"], images.orig_sizes)
    t_score = time.perf_counter() - t0
    rss = peak_rss_mb()
    t0 = time.perf_counter()
    res = industrial_metrics(test, ex["scores"], maps, detector.threshold_, pixel_threshold)
    labels = test.is_anomalous.astype(int)
    comps = ex.get("components") or {}  # AUROC of each alternative image score, if any
    if comps:
        res["components"] = {k: _auroc(labels, v) for k, v in comps.items()}
    res.update(score_seconds=round(t_score, 2), metric_seconds=round(time.perf_counter() - t0, 2))
    res["peak_rss_mb_scoring"] = round(rss, 1)
    res["labels"] = [int(v) for v in labels]
    return res


def evaluate_one_class(
    detector,
    test: ImageSet,
    anomalous: np.ndarray,
    validation: ImageSet | None = None,
    variants: dict[str, ScoringSpec] | None = None,
) -> dict[str, Any]:
    """The one-class metrics (in %) of a fitted detector on ``test``, whose anomalous
    images ``anomalous`` flags (truth kept apart from the images the detector scores).

    ``variants`` maps a column name to a further scoring spec, fitted on ``validation``
    (held-out normals) with the same trained network; their AUROCs join the method's own
    alternative scores in ``components``. Adds ``score_seconds`` (the main scoring pass).
    """
    images = test.unlabelled()
    labels = np.asarray(anomalous).astype(int)
    t0 = time.perf_counter()
    scored = detector.explain(images, n=0, maps=False)  # scores and components, one pass
    t_score = time.perf_counter() - t0
    res = _image_entries(labels, scored["scores"])
    components = {k: _auroc(labels, v) for k, v in scored["components"].items()}
    held_out = None if validation is None else validation.unlabelled()
    for name, spec in (variants or {}).items():
        v = detector.score_variant(images, held_out, spec.score, spec.difficulty, spec.mode)
        components[name] = _auroc(labels, v)
    if components:
        res["components"] = components
    # The leakage-free operating point: threshold from held-out training normals.
    t = detector.threshold_
    res["calibrated"] = _rates(t, scored["scores"] > t, labels == 1)
    res["score_seconds"] = round(t_score, 2)
    return res

"""The label fence: a detector never sees test truth; only the metric functions do."""

from __future__ import annotations

import numpy as np
import pytest

from reconad.data.imageset import ImageSet
from reconad.detector import Detector
from reconad.evaluate import evaluate, evaluate_one_class
from reconad.scoring import ScoringSpec


def _labelled(n: int = 40, side: int = 16) -> ImageSet:
    """Gray squares, the second half with a bright defect; labels and masks on every image."""
    rng = np.random.default_rng(0)
    images = rng.integers(90, 110, (n, 1, side, side)).astype(np.uint8)
    labels = np.r_[np.zeros(n // 2), np.ones(n - n // 2)].astype(np.int64)
    masks = []
    for i in range(n):
        m = np.zeros((side, side), bool)
        if labels[i]:
            m[4:8, 4:8] = True
            images[i, 0][m] = 250
        masks.append(m)
    return ImageSet(images, labels=labels, class_names=["good", "spot"], masks=masks)


def test_unlabelled_keeps_the_images_and_drops_the_truth():
    data = _labelled()
    bare = data.unlabelled()
    assert bare.labels is None and bare.masks is None and bare.class_names is None
    assert bare.images is data.images and bare.orig_sizes == data.orig_sizes
    assert data.labels is not None and data.masks is not None  # the original keeps its truth
    assert bare.unlabelled() is bare


def test_the_detector_strips_labels_from_whatever_it_is_given(monkeypatch):
    """Called directly with a labelled set, the detector passes no truth inward: every set
    it prepares for the method (training, held-out, scoring) carries none."""
    seen = []
    prepare = Detector._prepare

    def spy(self, data):
        seen.append((data.labels, data.masks, data.class_names))
        return prepare(self, data)

    monkeypatch.setattr(Detector, "_prepare", spy)
    data = _labelled()
    det = Detector("pca", progress=False).fit(data.subset(np.arange(20)))
    det.score_samples(data)
    det.explain(data, n=2)
    det.anomaly_maps(data)
    assert len(seen) >= 4
    assert all(t == (None, None, None) for t in seen), seen


class _Strict:
    """A detector stand-in that fails if the images it is given carry any truth."""

    threshold_ = 0.5

    def explain(self, data, n=None, maps=True, map_scores=False):
        assert data.labels is None and data.masks is None and data.class_names is None
        scores = data.images.reshape(len(data), -1).max(1) / 255.0
        amap = data.images[:, 0].astype(np.float32) / 255.0
        return {"scores": scores, "maps": amap if maps else None, "extras": {}, "components": {}}

    def score_variant(self, data, validation, *options):
        assert data.labels is None and (validation is None or validation.labels is None)
        return data.images.reshape(len(data), -1).mean(1)


def test_evaluate_hands_truth_to_the_metrics_only():
    data = _labelled()
    res = evaluate(_Strict(), data)
    assert res["auroc"] == pytest.approx(100.0) and res["pixel_auroc"] > 99
    assert res["labels"] == [int(v) for v in data.is_anomalous]
    assert res["calibrated"]["test_tpr"] == pytest.approx(100.0)


def test_evaluate_one_class_keeps_truth_apart():
    data = _labelled()
    truth = data.labels == 1
    res = evaluate_one_class(
        _Strict(), data, truth, validation=data.subset(np.arange(5)),
        variants={"+mean": ScoringSpec("multiview")},
    )  # fmt: skip
    assert res["auroc"] == pytest.approx(100.0)
    assert res["calibrated"]["test_fpr"] == 0.0 and res["components"]["+mean"] > 90

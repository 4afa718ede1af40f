"""Metrics against cases computed by hand, and AUPRO against a slow obvious reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from reconad.metrics import (
    MetricError,
    aupro,
    average_precision,
    f1_max,
    image_auroc,
    image_metrics,
    pixel_auroc,
    pixel_metrics,
    pro_curve,
    tpr_at_fpr,
)

# ----------------------------------------------------------------------------- image level

# Normals score 0.1, 0.4; anomalies 0.35, 0.8.
# AUROC: pairs (anomaly > normal): 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 of 4 = 0.75.
# Descending: 0.8 A, 0.4 N, 0.35 A, 0.1 N.
# PR points: t=0.8 P=1 R=1/2; t=0.4 P=1/2 R=1/2; t=0.35 P=2/3 R=1; t=0.1 P=1/2 R=1.
# AP = sum (R_n - R_{n-1}) P_n = 1/2 * 1 + 1/2 * 2/3 = 5/6.
# F1: 2/3, 1/2, 2*(2/3)/(5/3) = 4/5, 2/3 -> max 0.8.
# TPR at FPR 0.05 (no false positive allowed with 2 normals): t=0.8 -> 1/2.
# TPR at FPR 0.5 (one false positive allowed): t=0.35 -> 1.
LABELS = [0, 0, 1, 1]
SCORES = [0.1, 0.4, 0.35, 0.8]


def test_image_metrics_by_hand():
    assert image_auroc(LABELS, SCORES) == pytest.approx(0.75)
    assert average_precision(LABELS, SCORES) == pytest.approx(5 / 6)
    assert f1_max(LABELS, SCORES) == pytest.approx(0.8)
    assert tpr_at_fpr(LABELS, SCORES, 0.05) == pytest.approx(0.5)
    assert tpr_at_fpr(LABELS, SCORES, 0.5) == pytest.approx(1.0)
    assert image_metrics(LABELS, SCORES) == pytest.approx(
        {"auroc": 0.75, "ap": 5 / 6, "f1_max": 0.8, "tpr_at_5fpr": 0.5}
    )


def test_auroc_ties_count_half():
    # One tie only: 0.5.
    assert image_auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    # Normals {1, 2}, anomalies {2, 3, 1}:
    # 2 vs 1 win, 2 vs 2 tie, 3 wins twice, 1 vs 1 tie, 1 vs 2 loss -> (1+.5+2+.5+0)/6 = 2/3.
    assert image_auroc([0, 0, 1, 1, 1], [1, 2, 2, 3, 1]) == pytest.approx(2 / 3)


def test_ap_and_f1_with_tied_scores():
    # Descending groups: {0.9: A, N}, {0.5: A}, {0.1: N}.
    # t=0.9: TP=1 FP=1 -> P=1/2 R=1/2; t=0.5: TP=2 FP=1 -> P=2/3 R=1; t=0.1: P=1/2 R=1.
    # AP = 1/2 * 1/2 + 1/2 * 2/3 = 7/12.  F1: 1/2, 4/5, 2/3 -> 0.8.
    labels, scores = [1, 0, 1, 0], [0.9, 0.9, 0.5, 0.1]
    assert average_precision(labels, scores) == pytest.approx(7 / 12)
    assert f1_max(labels, scores) == pytest.approx(0.8)


def test_tpr_at_fpr_by_hand():
    # Ten normals score 0..9, anomalies 9.5, 8.5, 5, 2 (a predicted positive has score >= t).
    # fpr 0   : no normal above -> t=9.5 -> TPR 1/4.
    # fpr 0.1 : one normal (9)  -> t=8.5 -> TPR 2/4 (t=8 would flag two normals).
    # fpr 0.2 : normals 8, 9    -> t=8   -> TPR 2/4.
    # fpr 0.5 : normals 5..9    -> t=5 (tie with anomaly 5) -> TPR 3/4.
    # fpr 1   : everything      -> TPR 1.
    labels = [0] * 10 + [1] * 4
    scores = list(range(10)) + [9.5, 8.5, 5, 2]
    expected = {0.0: 0.25, 0.05: 0.25, 0.1: 0.5, 0.2: 0.5, 0.5: 0.75, 1.0: 1.0}
    for fpr, tpr in expected.items():
        assert tpr_at_fpr(labels, scores, fpr) == pytest.approx(tpr), fpr


def test_image_metrics_return_plain_floats_in_unit_interval():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    labels[:2] = [0, 1]
    out = image_metrics(labels, rng.normal(size=50))
    assert set(out) == {"auroc", "ap", "f1_max", "tpr_at_5fpr"}
    assert all(type(v) is float and 0.0 <= v <= 1.0 for v in out.values())


IMAGE_FUNCS = [image_auroc, average_precision, f1_max, tpr_at_fpr, image_metrics]


@pytest.mark.parametrize("func", IMAGE_FUNCS)
@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 0, 0], [1, 2, 3], "no anomalous images"),
        ([1, 1], [1, 2], "no normal images"),
        ([0, 1, 0, 1], [np.nan, 1, np.nan, np.inf], "2 NaN and 1 infinite"),
        ([0, 1, 1], [1, 2], "3 labels but 2 scores"),
        ([], [], "empty"),
        ([[0, 1]], [[1, 2]], "1-D"),
        ([0, 2], [1, 2], "must be 0 .normal. or 1"),
        ([0, 1], ["a", "b"], "numeric"),
    ],
)
def test_image_errors(func, labels, scores, message):
    with pytest.raises(MetricError, match=message):
        func(labels, scores)


@pytest.mark.parametrize("fpr", [-0.1, 1.5])
def test_tpr_at_fpr_rejects_bad_rate(fpr):
    with pytest.raises(MetricError, match="fpr must lie in"):
        tpr_at_fpr(LABELS, SCORES, fpr)


def test_metric_error_is_value_error():
    assert issubclass(MetricError, ValueError)


# ----------------------------------------------------------------------------- pixel AUROC


def test_pixel_auroc_by_hand_list_of_sizes():
    # Pixels pooled: anomalous {0.9}; normal {0.2, 0.9, 0.1} -> (1 + 0.5 + 1) / 3 = 5/6.
    masks = [np.array([[0, 1]]), np.zeros((2, 1))]
    maps = [np.array([[0.2, 0.9]]), np.array([[0.9], [0.1]])]
    assert pixel_auroc(masks, maps) == pytest.approx(5 / 6)


def test_pixel_auroc_by_hand_array():
    # Anomalous {0.8, 0.5}; normal {0.3, 0.6, 0.1, 0.2, 0.9, 0.4}.
    # 0.8 beats 5 normals, 0.5 beats 4 -> 9/12.
    masks = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 1]]])
    maps = np.array([[[0.8, 0.3], [0.6, 0.1]], [[0.2, 0.9], [0.4, 0.5]]])
    assert pixel_auroc(masks, maps) == pytest.approx(0.75)
    assert pixel_auroc(masks.astype(bool), maps.astype(np.float32)) == pytest.approx(0.75)


# ----------------------------------------------------------------------------- AUPRO by hand

# One 4x4 image, two regions of two pixels (A top-left, B bottom-right), 12 normal pixels.
MASK = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]])
MAP = np.array(
    [
        [0.9, 0.9, 0.85, 0.7],
        [0.6, 0.5, 0.1, 0.1],
        [0.1, 0.1, 0.1, 0.1],
        [0.1, 0.1, 0.8, 0.5],
    ]
)
# Normals: 0.85, 0.7, 0.6, 0.5 and eight 0.1.  A: 0.9, 0.9.  B: 0.8, 0.5.
# threshold : FPR   PRO
#   +inf    : 0     0
#   0.9     : 0     (1 + 0)/2   = 1/2
#   0.85    : 1/12  1/2
#   0.8     : 1/12  (1 + 1/2)/2 = 3/4
#   0.7     : 2/12  3/4
#   0.6     : 3/12  3/4
#   0.5     : 4/12  1          (a normal pixel and B's second pixel enter together)
#   0.1     : 1     1
CURVE_FPR = [0, 0, 1 / 12, 1 / 12, 2 / 12, 3 / 12, 4 / 12, 1]
CURVE_PRO = [0, 1 / 2, 1 / 2, 3 / 4, 3 / 4, 3 / 4, 1, 1]
# Area to 0.3: 1/2 * 1/12 + 3/4 * 2/12 + trapezoid on [0.25, 0.3] where the segment
# (3/12, 3/4) -> (4/12, 1) is interpolated at 0.3: 3/4 + 1/4 * 0.05 / (1/12) = 0.9,
# so (0.75 + 0.9)/2 * 0.05 = 0.04125.  Total 1/24 + 1/8 + 0.04125 = 499/2400; / 0.3 = 499/720.
AUPRO_03 = 499 / 720
# Limit 0.25 is a curve point: (1/24 + 1/8) / 0.25 = 2/3.
# Limit 1: 1/24 + 1/8 + (3/4 + 1)/2 * 1/12 + 1 * 2/3 = 21.75/24.
AUPRO_025 = 2 / 3
AUPRO_1 = 21.75 / 24


def test_pro_curve_by_hand():
    fprs, pros, thresholds = pro_curve([MASK], [MAP])
    np.testing.assert_allclose(fprs, CURVE_FPR)
    np.testing.assert_allclose(pros, CURVE_PRO)
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.1])


def test_aupro_by_hand_with_interpolation():
    assert aupro([MASK], [MAP]) == pytest.approx(AUPRO_03)
    assert aupro([MASK], [MAP], fpr_limit=0.25) == pytest.approx(AUPRO_025)
    assert aupro([MASK], [MAP], fpr_limit=1.0) == pytest.approx(AUPRO_1)
    # Without interpolation (cut at 0.25, or extend flat) the number would differ:
    assert AUPRO_03 != pytest.approx((1 / 24 + 1 / 8) / 0.3)
    assert AUPRO_03 != pytest.approx((1 / 24 + 1 / 8 + 0.75 * 0.05) / 0.3)


def test_aupro_array_input_matches_list():
    assert aupro(MASK[None], MAP[None]) == pytest.approx(AUPRO_03)


def test_aupro_varying_sizes_list():
    # The same pixels split over a 2x3 and a 2x5 image: the pooled normal scores and the
    # region scores are unchanged, so the value is the hand-computed one.
    masks = [
        np.array([[1, 1, 0], [0, 0, 0]]),
        np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]),
    ]
    maps = [
        np.array([[0.9, 0.9, 0.85], [0.7, 0.1, 0.1]]),
        np.array([[0.6, 0.5, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.8, 0.5]]),
    ]
    assert aupro(masks, maps) == pytest.approx(AUPRO_03)
    assert pixel_metrics(masks, maps)["aupro"] == pytest.approx(AUPRO_03)


def test_aupro_perfect_and_inverted():
    # Perfect: curve (0,0) -> (0,1) -> (1,1): area 0.3 / 0.3 = 1.
    # Inverted: curve (0,0) -> (1,0) -> (1,1): area 0.
    assert aupro([MASK], [MASK.astype(float)]) == pytest.approx(1.0)
    assert aupro([MASK], [1.0 - MASK]) == pytest.approx(0.0)


def test_aupro_defect_free_image_adds_no_region():
    # A defect-free image (all-zero mask) adds normal pixels but no region; if it added an
    # empty region, the PRO could never reach 1 and a perfect map would score below 1.
    masks = [MASK, np.zeros((3, 5))]
    maps = [MASK.astype(float), np.zeros((3, 5))]
    assert aupro(masks, maps) == pytest.approx(1.0)


def test_aupro_uses_8_connectivity():
    # Pixels (0,0), (1,1), (2,1): one 8-connected region of 3 pixels (two under 4-connectivity).
    # Only (0,0) scores 1, every other pixel 0.  8-connected: PRO at t=1 is 1/3, curve
    # (0,0) -> (0,1/3) -> (1,1); at FPR 0.3 PRO = 1/3 + 2/3 * 0.3 = 0.5333,
    # AUPRO = (1/3 + 0.5333)/2 = 13/30.  (4-connectivity would give PRO 1/2 and 0.575.)
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    amap = np.zeros((3, 3))
    amap[0, 0] = 1.0
    _, pros, _ = pro_curve([mask], [amap])
    assert pros[1] == pytest.approx(1 / 3)
    assert aupro([mask], [amap]) == pytest.approx(13 / 30)


# ----------------------------------------------------------------------------- AUPRO vs slow


def slow_aupro(masks, maps, fpr_limit=0.3, thresholds=None):
    """Obvious reference: loop over thresholds, then over curve segments."""
    normal, regions = [], []
    for mask, amap in zip(masks, maps, strict=True):
        labeled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        normal.append(amap[labeled == 0])
        regions += [amap[labeled == k] for k in range(1, n + 1)]
    normal = np.concatenate(normal)
    if thresholds is None:
        thresholds = np.unique(np.concatenate([m.ravel() for m in maps]))
    points = [(0.0, 0.0)]
    for t in sorted(thresholds, reverse=True):
        fpr = np.mean(normal >= t)
        pro = np.mean([np.mean(region >= t) for region in regions])
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
            continue
        if x0 < fpr_limit:
            y = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y) / 2
        break
    return area / fpr_limit


def random_case(seed):
    """Images of varying size with blob-shaped defects (some none) and tied scores."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(6):
        h, w = rng.integers(6, 14, size=2)
        noise = ndimage.gaussian_filter(rng.normal(size=(h, w)), 1.5)
        mask = (noise > np.quantile(noise, 0.8)) if i % 3 else np.zeros((h, w), bool)
        amap = np.round(0.4 * mask + rng.uniform(size=(h, w)), 1)  # rounding creates ties
        masks.append(mask)
        maps.append(amap)
    return masks, maps


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_slow_reference(seed, fpr_limit):
    masks, maps = random_case(seed)
    assert aupro(masks, maps, fpr_limit) == pytest.approx(slow_aupro(masks, maps, fpr_limit))


@pytest.mark.parametrize("num_thresholds", [2, 7, 50])
def test_aupro_binned_matches_slow_reference(num_thresholds):
    masks, maps = random_case(11)
    pooled = np.concatenate([m.ravel() for m in maps])
    grid = np.linspace(pooled.min(), pooled.max(), num_thresholds)
    expected = slow_aupro(masks, maps, 0.3, thresholds=grid)
    assert aupro(masks, maps, num_thresholds=num_thresholds) == pytest.approx(expected)


def test_pixel_metrics_keys():
    masks, maps = random_case(3)
    out = pixel_metrics(masks, maps)
    assert out == pytest.approx(
        {"pixel_auroc": pixel_auroc(masks, maps), "aupro": aupro(masks, maps)}
    )


# ----------------------------------------------------------------------------- pixel errors

PIXEL_FUNCS = [pixel_auroc, aupro, pixel_metrics, pro_curve]
GOOD = np.array([[1, 0], [0, 0]])


@pytest.mark.parametrize("func", PIXEL_FUNCS)
@pytest.mark.parametrize(
    ("masks", "maps", "message"),
    [
        ([GOOD, GOOD], [GOOD, np.zeros((2, 3))], r"image 1: mask shape \(2, 2\) and map shape"),
        ([GOOD, GOOD], [GOOD], "2 masks but 1 maps"),
        ([], [], "empty"),
        (np.zeros((0, 2, 2)), np.zeros((0, 2, 2)), "empty"),
        ([np.zeros((0, 3))], [np.zeros((0, 3))], "no pixels"),
        ([GOOD, GOOD], [np.full((2, 2), np.nan), GOOD], "4 NaN and 0 infinite"),
        ([GOOD], [np.array([[np.inf, 0], [0, 0]])], "0 NaN and 1 infinite"),
        ([GOOD * 255], [GOOD], r"must be 0 \(normal\) or 1"),
        (GOOD[None, None], GOOD[None, None], "squeeze the channel axis"),
        ([np.array([1, 0])], [np.array([1, 0])], "same 2-D shape"),
        ([GOOD], [np.array([["a", "b"], ["c", "d"]])], "numeric"),
    ],
)
def test_pixel_input_errors(func, masks, maps, message):
    with pytest.raises(MetricError, match=message):
        func(masks, maps)


@pytest.mark.parametrize("func", [pixel_auroc, pixel_metrics])
def test_pixel_auroc_needs_both_classes(func):
    with pytest.raises(MetricError, match="no anomalous pixels"):
        func([np.zeros((2, 2))], [GOOD])
    with pytest.raises(MetricError, match="no normal pixels"):
        func([np.ones((2, 2))], [GOOD])


@pytest.mark.parametrize("func", [aupro, pro_curve])
def test_aupro_needs_region_and_normal_pixel(func):
    with pytest.raises(MetricError, match="no anomalous region"):
        func([np.zeros((2, 2)), np.zeros((1, 3))], [GOOD, np.zeros((1, 3))])
    with pytest.raises(MetricError, match="no normal pixels"):
        func([np.ones((2, 2))], [GOOD])


@pytest.mark.parametrize("fpr_limit", [0.0, -0.1, 1.5])
def test_aupro_rejects_bad_fpr_limit(fpr_limit):
    with pytest.raises(MetricError, match="fpr_limit"):
        aupro([GOOD], [GOOD], fpr_limit=fpr_limit)


@pytest.mark.parametrize("func", [aupro, pro_curve])
@pytest.mark.parametrize("num_thresholds", [1, 0, 2.5])
def test_rejects_bad_num_thresholds(func, num_thresholds):
    with pytest.raises(MetricError, match="num_thresholds"):
        func([GOOD], [GOOD], num_thresholds=num_thresholds)


def test_pixel_metrics_share_one_sort_and_match_sklearn_with_ties():
    """The rank-based pixel AUROC equals scikit-learn's, ties included (one half each)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    masks = [rng.random((20 + i, 30)) < 0.1 for i in range(6)]
    maps = [np.round(rng.random(m.shape) + 0.3 * m, 1) for m in masks]  # many ties
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([m.ravel() for m in maps])
    expected = roc_auc_score(y, s)
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    both = pixel_metrics(masks, maps)
    assert both["pixel_auroc"] == pytest.approx(expected, abs=1e-12)
    assert both["aupro"] == pytest.approx(aupro(masks, maps), abs=1e-12)

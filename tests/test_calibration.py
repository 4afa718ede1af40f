"""Thresholds and standardisation from held-out normal scores, checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reconad.calibration import Standardizer, threshold_at_fpr


def frac_above(scores, t):
    return float(np.mean(np.asarray(scores) > t))


@pytest.mark.parametrize(
    ("scores", "target", "expected"),
    [
        # 20 scores 1..20, 5%: one score may lie above -> 19 (only 20 is above: 1/20).
        (np.arange(1, 21), 0.05, 19.0),
        # 10%: two may lie above -> 18.
        (np.arange(1, 21), 0.10, 18.0),
        # 5 scores at 5%: floor(0.25) = 0 above -> the maximum.
        ([3, 1, 4, 1, 5], 0.05, 5.0),
        # 5 scores at 20%: one above -> 4 (5 is above: 1/5).
        ([3, 1, 4, 1, 5], 0.20, 4.0),
        # 5 scores at 39%: still floor(1.95) = 1 above -> 4.
        ([3, 1, 4, 1, 5], 0.39, 4.0),
        # target 0 -> the maximum.
        ([3, 1, 4, 1, 5], 0.0, 5.0),
        # All equal: nothing lies strictly above the common value.
        ([2, 2, 2, 2], 0.5, 2.0),
        # Ties: budget 2 of 5, sorted [1, 2, 2, 2, 3] -> 2 (only 3 is above); any t < 2 would
        # leave four above.
        ([2, 1, 2, 3, 2], 0.4, 2.0),
        # A single score.
        ([7.5], 0.05, 7.5),
    ],
)
def test_threshold_at_fpr_by_hand(scores, target, expected):
    t = threshold_at_fpr(scores, target)
    assert t == expected
    assert frac_above(scores, t) <= target


def test_threshold_float_rounding_guard():
    # 0.29 * 100 = 28.999999999999996 in floating point; the budget is still 29 of 100.
    t = threshold_at_fpr(np.arange(100), 0.29)
    assert t == 70.0
    assert np.sum(np.arange(100) > t) == 29


def test_threshold_is_tightest_on_random_sets():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        scores = np.round(rng.normal(size=n), 1)  # rounding creates ties
        target = float(rng.uniform(0, 0.99))
        t = threshold_at_fpr(scores, target)
        assert frac_above(scores, t) <= target
        lower = scores[scores < t]
        if lower.size:  # the next lower candidate breaks the budget
            assert frac_above(scores, lower.max()) > target


@pytest.mark.parametrize(
    ("scores", "target", "message"),
    [
        ([], 0.05, "at least 1"),
        ([1.0, np.nan, np.nan], 0.05, "2 NaN and 0 infinite"),
        ([1.0, np.inf], 0.05, "0 NaN and 1 infinite"),
        ([[1.0, 2.0]], 0.05, "1-D"),
        (["a"], 0.05, "numeric"),
        ([1.0, 2.0], -0.1, r"\[0, 1\)"),
        ([1.0, 2.0], 1.0, r"\[0, 1\)"),
    ],
)
def test_threshold_errors(scores, target, message):
    with pytest.raises(ValueError, match=message):
        threshold_at_fpr(scores, target)


def test_standardizer_by_hand():
    # mean 3; sample variance (4 + 1 + 0 + 1 + 4) / 4 = 2.5.
    std = Standardizer().fit([1, 2, 3, 4, 5])
    assert std.mean_ == pytest.approx(3.0)
    assert std.std_ == pytest.approx(np.sqrt(2.5))
    np.testing.assert_allclose(std.transform([3.0, 3.0 + np.sqrt(2.5)]), [0.0, 1.0])
    assert std.transform(np.zeros((2, 3))).shape == (2, 3)


def test_standardizer_constant_scores_use_floor():
    std = Standardizer(min_std=1e-6).fit([4.0, 4.0, 4.0])
    assert std.std_ == 1e-6
    assert np.all(np.isfinite(std.transform([4.0, 5.0])))


def test_standardizer_json_round_trip():
    std = Standardizer().fit([0.1, 0.5, 0.2, 0.9])
    back = Standardizer.from_dict(json.loads(json.dumps(std.to_dict())))
    assert (back.mean_, back.std_, back.min_std) == (std.mean_, std.std_, std.min_std)
    np.testing.assert_array_equal(back.transform([0.3, 2.0]), std.transform([0.3, 2.0]))


def test_standardizer_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().transform([1.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().to_dict()
    with pytest.raises(ValueError, match="at least 2"):
        Standardizer().fit([1.0])
    with pytest.raises(ValueError, match="1 NaN"):
        Standardizer().fit([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="min_std"):
        Standardizer(min_std=0.0).fit([1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        Standardizer().fit([1.0, 2.0]).transform([np.nan])
    with pytest.raises(ValueError, match="lacks"):
        Standardizer.from_dict({"mean": 1.0})
    with pytest.raises(ValueError, match="invalid"):
        Standardizer.from_dict({"mean": 1.0, "std": 0.0})

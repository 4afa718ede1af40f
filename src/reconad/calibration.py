"""Decision thresholds and score normalisation from held-out normal images.

Leakage rule (DESIGN.md, "No test-set leakage"): everything here is fitted ONLY on the scores
of normal images held out from the training split. Test images and test labels never reach
these functions; only :mod:`reconad.metrics` reads test labels.

Decision rule that goes with :func:`threshold_at_fpr`: an image is anomalous when
``score > threshold`` (strictly greater).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Standardizer", "threshold_at_fpr"]


def _normal_scores(scores: ArrayLike, min_count: int = 1) -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"normal scores must be numeric: {err}") from None
    if s.ndim != 1:
        raise ValueError(f"normal scores must be 1-D, got shape {s.shape}")
    if s.size < min_count:
        raise ValueError(f"need at least {min_count} held-out normal score(s), got {s.size}")
    bad = ~np.isfinite(s)
    if bad.any():
        n_nan = int(np.isnan(s).sum())
        raise ValueError(
            f"normal scores contain {n_nan} NaN and {int(bad.sum()) - n_nan} infinite "
            f"value(s) of {s.size}"
        )
    return s


def threshold_at_fpr(normal_scores: ArrayLike, target_fpr: float = 0.05) -> float:
    """Lowest threshold that flags at most ``target_fpr`` of the held-out normal images.

    With n scores, at most ``m = floor(target_fpr * n)`` of them may lie strictly above the
    threshold; the returned value is the (m+1)-th largest score, the smallest threshold that
    meets the budget (ties can only leave fewer above it). Examples: 20 scores at 5% leave one
    above; 5 scores at 5% give the maximum; ``target_fpr=0`` gives the maximum; all-equal
    scores give that value.

    Args:
        normal_scores: 1-D scores of held-out normal images (never test images).
        target_fpr: false-positive budget in [0, 1).

    Returns:
        The threshold; predict anomalous when ``score > threshold``.
    """
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must lie in [0, 1), got {target_fpr}")
    s = np.sort(_normal_scores(normal_scores))
    n = s.size
    m = math.floor(target_fpr * n + 1e-9)  # guard 0.29 * 100 = 28.999...
    while m > 0 and m / n > target_fpr:  # never exceed the budget
        m -= 1
    return float(s[n - 1 - m])


class Standardizer:
    """Z-score normalisation of anomaly scores, fitted on held-out normal scores.

    Makes scores comparable across classes and models: after ``transform`` a held-out normal
    image scores about 0 and one standard deviation is 1.

    Args:
        min_std: floor on the fitted standard deviation so that constant scores do not divide
            by zero.
    """

    def __init__(self, min_std: float = 1e-12) -> None:
        self.min_std = min_std

    def fit(self, normal_scores: ArrayLike) -> Standardizer:
        """Learn ``mean_`` and ``std_`` (sample std, ddof=1, floored) from >= 2 normal scores."""
        if not self.min_std > 0:
            raise ValueError(f"min_std must be > 0, got {self.min_std}")
        s = _normal_scores(normal_scores, min_count=2)
        self.mean_ = float(s.mean())
        self.std_ = max(float(s.std(ddof=1)), float(self.min_std))
        return self

    def transform(self, scores: ArrayLike) -> np.ndarray:
        """``(scores - mean_) / std_`` as float64, same shape as the input."""
        if not hasattr(self, "mean_"):
            raise RuntimeError("Standardizer is not fitted: call fit() on held-out normal scores")
        s = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(s).all():
            raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite value(s)")
        return (s - self.mean_) / self.std_

    def to_dict(self) -> dict[str, float]:
        """JSON-ready state."""
        if not hasattr(self, "mean_"):
            raise RuntimeError("Standardizer is not fitted: nothing to save")
        return {"mean": self.mean_, "std": self.std_, "min_std": float(self.min_std)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Standardizer:
        """Rebuild from :meth:`to_dict` output, checking the values."""
        missing = {"mean", "std"} - set(state)
        if missing:
            raise ValueError(f"Standardizer state lacks {sorted(missing)}")
        mean, std = float(state["mean"]), float(state["std"])
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"invalid Standardizer state: mean={mean}, std={std}")
        obj = cls(min_std=float(state.get("min_std", 1e-12)))
        obj.mean_, obj.std_ = mean, std
        return obj

"""Conformal p-values: a false-alarm rate that holds in finite samples.

The held-out normal images that set a detector's threshold also calibrate p-values. For a new
image with score s and n held-out scores, p = (1 + #{held-out scores >= s}) / (n + 1). If the
new image is a normal one exchangeable with the held-out ones, P(p <= alpha) <= alpha for
every alpha, with no assumption on the score's distribution (split conformal prediction;
Bates, Candes, Lei, Romano, Sesia, "Testing for outliers with conformal p-values", Annals of
Statistics 2023). Flagging p <= alpha then keeps the false-alarm rate on good parts at most
alpha. For a batch, Benjamini-Hochberg on these p-values controls the false discovery rate,
the expected share of good parts among the flagged ones (the paper shows that conformal
p-values are positively dependent in the way BH needs).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def p_values(calibration: ArrayLike, scores: ArrayLike) -> np.ndarray:
    """Conformal p-values of ``scores`` (higher = more anomalous) against held-out normal
    ``calibration`` scores; each in ``[1 / (n + 1), 1]``.

    Raises:
        ValueError: without calibration scores, or with non-finite ones.
    """
    cal = np.sort(np.asarray(calibration, dtype=np.float64).ravel())
    if not len(cal):
        raise ValueError("no held-out normal scores to calibrate p-values (val_fraction 0?)")
    if not np.isfinite(cal).all():
        raise ValueError("the held-out normal scores hold NaN or infinite values")
    s = np.asarray(scores, dtype=np.float64).ravel()
    at_least = len(cal) - np.searchsorted(cal, s, side="left")  # #{cal >= s}
    return (1.0 + at_least) / (len(cal) + 1.0)


def benjamini_hochberg(p: ArrayLike, q: float) -> np.ndarray:
    """Which hypotheses Benjamini-Hochberg rejects at false-discovery level ``q``: the
    largest k with p_(k) <= q k / m, and every p-value up to p_(k).

    Raises:
        ValueError: for ``q`` outside (0, 1).
    """
    if not 0 < q < 1:
        raise ValueError(f"the false discovery rate must lie in (0, 1); got {q}")
    p = np.asarray(p, dtype=np.float64).ravel()
    m = len(p)
    if not m:
        return np.zeros(0, dtype=bool)
    order = np.sort(p)
    ok = np.nonzero(order <= q * np.arange(1, m + 1) / m)[0]
    if not len(ok):
        return np.zeros(m, dtype=bool)
    return p <= order[ok[-1]]


__all__ = ["benjamini_hochberg", "p_values"]

"""Choose a map method's image score without test labels: held-out normals against the same
normals with synthetic defects.

A map method can score an image by its native score (often the mean error over the image),
by the maximum of its mean-filtered map (``map_max``) or by the mean of its top 1% pixels
(``map_topk``; see :func:`reconad.scoring.map_image_scores`). Which one separates defects
best depends on the data: a small scratch is diluted by a mean, a diffuse stain is not.
With ``image_score="auto"`` the detector scores its held-out normal images twice, as they
are and with DRAEM-style synthetic defects pasted in (:mod:`reconad.synthetic`), and keeps
the candidate with the highest AUROC between the two. Only training-side images take part;
no test image and no test label is read.

Ties keep the earlier candidate in :data:`CANDIDATES` (native first), so a method whose map
scores add nothing keeps its own score.

A probe every candidate passes says nothing about which is better. DRAEM, trained on these
very defects, separates them perfectly (AUROC 1.00 for every candidate on MVTec screw and
0.997-1.00 on Magnetic-Tile). So while two or more candidates reach :data:`SATURATED`, the
same defects are pasted again at half the opacity, down to :data:`STRENGTHS`' last, and the
choice is made at the first strength where they part (or the faintest).

The same probe chooses how much to smooth a map (``map_smoothing="auto"``,
:func:`choose_sigma`): the Gaussian width, among :data:`SIGMAS`, whose smoothed maps best
tell the synthetic defects' pixels (their masks) from every other pixel of the clean and
the defective images: the pixel AUROC on training-side images only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from reconad.synthetic import synthesize

#: the image scores a map method offers; ``auto`` chooses among them
CANDIDATES = ("native", "map_max", "map_topk")
IMAGE_SCORES = (*CANDIDATES, "auto")
#: fewer held-out normals than this give an AUROC too coarse to choose by
MIN_IMAGES = 8
#: opacity factors of the probe defects, tried in turn while the probe saturates
STRENGTHS = (1.0, 0.5, 0.25, 0.125)
#: two candidates at or above this AUROC are not told apart by the probe
SATURATED = 0.99
#: Gaussian widths (pixels at the working size) ``map_smoothing="auto"`` chooses among
SIGMAS = (0.0, 1.0, 2.0, 4.0, 8.0)


class Choice(NamedTuple):
    """The chosen image score, each candidate's AUROC (0-1) at the probe strength used."""

    name: str
    aurocs: dict[str, float]
    strength: float


def with_defects(images: np.ndarray, seed: int, strength: float = 1.0) -> np.ndarray:
    """The same uint8 images ``(N, C, H, W)``, each with one synthetic defect pasted in
    (:func:`with_defect_masks` without the masks)."""
    return with_defect_masks(images, seed, strength)[0]


def with_defect_masks(
    images: np.ndarray, seed: int, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The same uint8 images ``(N, C, H, W)``, each with one synthetic defect pasted in, and
    the defects' bool masks ``(N, H, W)``.

    ``strength`` scales each defect's opacity (1: DRAEM's own; 0.5: half as visible, on the
    same masks and textures, since the seed is the same).

    The defects are DRAEM's (Perlin-shaped masks filled with another image's texture, Perlin
    noise or a flat colour), with no rotation of the image itself, drawn from ``seed`` without
    moving the global random state. An image whose mask came out empty is drawn again (up to
    ten times), so every returned image carries a defect.
    """
    x = torch.from_numpy(images).float() / 255.0
    out = x.clone()
    masks = torch.zeros(len(x), *x.shape[2:], dtype=torch.bool)
    todo = torch.ones(len(x), dtype=torch.bool)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(10):
            if not bool(todo.any()):
                break
            _, aug, mask = synthesize(x, anomaly_prob=1.0, rotate_prob=0.0)
            hit = todo & (mask.flatten(1).sum(1) > 0)
            out[hit] = aug[hit]
            masks[hit] = mask[hit, 0] > 0
            todo &= ~hit
    out = x + strength * (out - x)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), masks.numpy()


def choose(
    score_all: Callable[[np.ndarray], dict[str, np.ndarray]], normals: np.ndarray, seed: int
) -> Choice:
    """The candidate that best tells ``normals`` from ``with_defects(normals)``, at the
    strongest probe strength that does not saturate.

    Args:
        score_all: uint8 images -> every candidate's scores (``{"native": ..., "map_max": ...}``).
        normals: held-out normal images, uint8 ``(N, C, H, W)``.
        seed: the defects' seed.

    Returns:
        the chosen candidate, each candidate's AUROC (0-1), and the strength used.

    Raises:
        ValueError: with fewer than :data:`MIN_IMAGES` normal images.
    """
    _check_enough("image_score", normals, "choose an image score (native, map_max, map_topk)")
    clean = score_all(normals)
    labels = np.r_[np.zeros(len(normals)), np.ones(len(normals))]

    def aurocs_at(strength: float) -> dict[str, float]:
        defect = score_all(with_defects(normals, seed, strength))
        return {
            k: float(roc_auc_score(labels, np.r_[clean[k], defect[k]]))
            for k in CANDIDATES
            if k in clean
        }

    return Choice(*_probe(aurocs_at))


def _check_enough(option: str, normals: np.ndarray, instead: str) -> None:
    if len(normals) < MIN_IMAGES:
        raise ValueError(
            f"{option}='auto' compares {len(normals)} held-out normal image(s) with "
            f"synthetic defects; it needs at least {MIN_IMAGES}: hold out more "
            f"(val_fraction) or {instead}"
        )


def _probe(aurocs_at: Callable[[float], dict]) -> tuple[Any, dict, float]:
    """``(best, aurocs, strength)``: each candidate's AUROC at the strongest probe strength
    where at most one candidate saturates (so the probe tells them apart), or else at the
    faintest; ties keep the candidate that comes first in ``aurocs``."""
    for strength in STRENGTHS:
        aurocs = aurocs_at(strength)
        if sum(v >= SATURATED for v in aurocs.values()) < 2:
            break
    best = max(aurocs.values())
    return next(k for k, v in aurocs.items() if v == best), aurocs, strength


class SigmaChoice(NamedTuple):
    """The chosen map smoothing, each width's pixel AUROC (0-1) at the strength used."""

    sigma: float
    aurocs: dict[float, float]
    strength: float


def choose_sigma(
    maps_of: Callable[[np.ndarray], np.ndarray], normals: np.ndarray, seed: int
) -> SigmaChoice:
    """The Gaussian width (:data:`SIGMAS`) whose smoothed maps give the highest pixel AUROC
    on ``normals`` and ``with_defect_masks(normals)``, at the strongest probe strength where
    at most one width saturates; ties keep the narrower.

    Args:
        maps_of: uint8 images -> their raw anomaly maps ``(N, H, W)``.
        normals: held-out normal images, uint8 ``(N, C, H, W)``.
        seed: the defects' seed.

    Raises:
        ValueError: with fewer than :data:`MIN_IMAGES` normal images.
    """
    from reconad.methods.maps import gaussian_smooth

    _check_enough("map_smoothing", normals, "give a width in pixels")
    clean = torch.from_numpy(maps_of(normals)).float()[:, None]

    def aurocs_at(strength: float) -> dict[float, float]:
        images, masks = with_defect_masks(normals, seed, strength)
        maps = torch.cat([clean, torch.from_numpy(maps_of(images)).float()[:, None]])
        truth = np.r_[np.zeros(clean.numel(), bool), masks.ravel()]
        return {
            s: float(roc_auc_score(truth, gaussian_smooth(maps, s).numpy().ravel())) for s in SIGMAS
        }

    return SigmaChoice(*_probe(aurocs_at))


__all__ = [
    "CANDIDATES",
    "IMAGE_SCORES",
    "MIN_IMAGES",
    "SATURATED",
    "SIGMAS",
    "STRENGTHS",
    "Choice",
    "SigmaChoice",
    "choose",
    "choose_sigma",
    "with_defect_masks",
    "with_defects",
]

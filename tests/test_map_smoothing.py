"""Map smoothing: the Gaussian filter, its choice on synthetic defects, and the detector."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reconad import Detector
from reconad.export import ExportError, export_onnx
from reconad.methods.maps import gaussian_smooth
from reconad.score_choice import (
    MIN_IMAGES,
    SIGMAS,
    STRENGTHS,
    choose_sigma,
    with_defect_masks,
    with_defects,
)
from tests.conftest import digit_zeros


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return digit_zeros(32)


def test_gaussian_smooth_spreads_a_spike_and_keeps_a_flat_map():
    spike = torch.zeros(1, 1, 32, 32)
    spike[0, 0, 16, 16] = 1.0
    out = gaussian_smooth(spike, 2.0)
    assert out.shape == spike.shape and out[0, 0, 16, 16] < 0.1
    assert out[0, 0, 16, 16] == out.max() and out.sum() == pytest.approx(1.0, abs=1e-4)
    assert gaussian_smooth(spike, 0.0) is spike
    flat = torch.full((2, 1, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_smooth(flat, 8.0), flat)  # kernel clipped to fit


def test_defect_masks_cover_the_pixels_that_changed(digits):
    images, masks = with_defect_masks(digits[:12], seed=1)
    np.testing.assert_array_equal(images, with_defects(digits[:12], seed=1))
    assert masks.dtype == bool and masks.shape == (12, 32, 32) and masks.any((1, 2)).all()
    changed = (images != digits[:12]).any(1)
    assert not (changed & ~masks).any()  # nothing changed outside a mask


def _noisy_maps(images: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per-pixel speckle plus the defect's change: a smoother map finds the region."""
    rng = np.random.default_rng(len(images))
    diff = np.abs(images.astype(np.float32) - clean[: len(images)]).mean(1) / 255
    return diff + rng.uniform(0, 1, diff.shape).astype(np.float32)


def test_choose_sigma_prefers_smoothing_over_speckle_and_none_on_clean_maps(digits):
    choice = choose_sigma(lambda x: _noisy_maps(x, digits), digits[:16], seed=0)
    assert set(choice.aurocs) == set(SIGMAS) and choice.sigma > 0
    assert choice.aurocs[choice.sigma] > choice.aurocs[0.0] + 0.02
    assert choice.strength == STRENGTHS[0]

    masks = with_defect_masks(digits[:16], seed=0)[1]  # the same masks at every strength

    def exact(x):  # a perfect map, the defect's mask: any smoothing blurs its edges
        defective = not np.array_equal(x, digits[:16])
        return masks.astype(np.float32) if defective else np.zeros(masks.shape, np.float32)

    assert choose_sigma(exact, digits[:16], seed=0).sigma == 0.0
    with pytest.raises(ValueError, match=f"at least {MIN_IMAGES}"):
        choose_sigma(exact, digits[: MIN_IMAGES - 1], seed=0)


def test_the_detector_smooths_maps_not_scores_and_keeps_it(digits, tmp_path):
    plain = Detector("pca", val_fraction=0.25, progress=False).fit(digits)
    det = Detector("pca", val_fraction=0.25, map_smoothing="auto", progress=False).fit(digits)
    assert det.map_sigma_ in SIGMAS and set(det.map_sigma_auroc_) == set(SIGMAS)
    np.testing.assert_allclose(det.score_samples(digits), plain.score_samples(digits))
    fixed = Detector("pca", val_fraction=0.25, map_smoothing=2, progress=False).fit(digits)
    raw = torch.from_numpy(plain.anomaly_maps(digits[:4]))[:, None]
    np.testing.assert_allclose(
        fixed.anomaly_maps(digits[:4]),
        gaussian_smooth(raw, 2.0)[:, 0].numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    assert fixed.map_sigma_auroc_ == {}
    det.save(tmp_path / "m")
    sc = json.loads((tmp_path / "m" / "config.json").read_text())["scoring"]
    assert sc["map_smoothing_option"] == "auto" and sc["map_sigma"] == det.map_sigma_
    assert "chosen automatically; pixel AUROC" in (tmp_path / "m" / "MODEL_CARD.md").read_text()
    back = Detector.load(tmp_path / "m")
    assert back.map_sigma_ == det.map_sigma_
    np.testing.assert_allclose(back.anomaly_maps(digits[:4]), det.anomaly_maps(digits[:4]))
    again = det.map_sigma_choice(digits[-8:])  # post hoc, on other images: leaves det alone
    assert again.sigma in SIGMAS and back.map_sigma_ == det.map_sigma_
    if det.map_sigma_:
        with pytest.raises(ExportError, match="--map-smoothing"):
            export_onnx(det, tmp_path / "m.onnx")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    plain.save(tmp_path / "p")  # without the option, config.json is as it was
    assert "map_sigma" not in json.loads((tmp_path / "p" / "config.json").read_text())["scoring"]
    assert saved["scoring"]["map_sigma_defect_strength"] == det.map_sigma_strength_


@pytest.mark.parametrize("value", [-1, "wide", float("nan"), True])
def test_bad_map_smoothing_is_refused(digits, value):
    with pytest.raises(ValueError, match="map_smoothing="):
        Detector("pca", map_smoothing=value, progress=False).fit(digits)


def test_map_smoothing_needs_maps(digits):
    with pytest.raises(ValueError, match="produces none"):
        Detector("iforest", map_smoothing=2, progress=False).fit(digits)

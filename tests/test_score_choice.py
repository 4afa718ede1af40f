"""Choosing a map method's image score on held-out normals and synthetic defects only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reconad import Detector
from reconad.score_choice import CANDIDATES, MIN_IMAGES, STRENGTHS, choose, with_defects
from reconad.scoring import map_image_scores
from tests.conftest import digit_zeros


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return digit_zeros(32)


def test_with_defects_changes_every_image_and_is_seeded(digits):
    state = torch.get_rng_state()
    a, b = with_defects(digits[:20], seed=3), with_defects(digits[:20], seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global random state is untouched
    assert a.dtype == np.uint8 and a.shape == digits[:20].shape
    np.testing.assert_array_equal(a, b)
    changed = (a.astype(int) != digits[:20]).reshape(20, -1).any(1)
    assert changed.all()
    assert not np.array_equal(a, with_defects(digits[:20], seed=4))


def test_choose_keeps_the_candidate_that_separates_and_native_on_ties(digits):
    def score_all(images):
        # "map_topk" sees the defects (mean change from the clean images), the others not
        diff = np.abs(images.astype(float) - digits[: len(images)]).mean((1, 2, 3))
        flat = np.zeros(len(images))
        return {"native": flat, "map_max": flat.copy(), "map_topk": diff}

    name, aurocs, strength = choose(score_all, digits[:20], seed=0)
    assert name == "map_topk" and aurocs["map_topk"] == 1.0 and aurocs["native"] == 0.5
    assert strength == 1.0  # one candidate passes, the others do not: no fainter probe needed

    def same(images):
        v = images.reshape(len(images), -1).mean(1)
        return {k: v for k in CANDIDATES}

    assert choose(same, digits[:20], seed=0)[0] == "native"


def test_a_saturated_probe_is_repeated_with_fainter_defects(digits):
    seen = []

    def score_all(images):  # every candidate sees every defect, however faint
        diff = np.abs(images.astype(float) - digits[: len(images)]).mean((1, 2, 3))
        seen.append(float(diff.mean()))
        return {k: diff + i for i, k in enumerate(CANDIDATES)}

    choice = choose(score_all, digits[:20], seed=0)
    assert choice.strength == STRENGTHS[-1] and choice.name == "native"
    assert set(choice.aurocs.values()) == {1.0}
    # clean, then one probe per strength, each fainter than the one before
    assert len(seen) == 1 + len(STRENGTHS) and seen[1] > seen[2] > seen[3] > seen[4] > 0
    faint = with_defects(digits[:5], seed=0, strength=0.5).astype(float) - digits[:5]
    full = with_defects(digits[:5], seed=0).astype(float) - digits[:5]
    np.testing.assert_allclose(faint, full / 2, atol=1.0)  # same defects, half the opacity


def test_choose_refuses_too_few_images(digits):
    with pytest.raises(ValueError, match=f"at least {MIN_IMAGES}"):
        choose(lambda x: {"native": np.zeros(len(x))}, digits[: MIN_IMAGES - 1], seed=0)


def test_auto_chooses_on_held_out_normals_and_survives_save_load(digits, tmp_path):
    det = Detector("pca", image_score="auto", val_fraction=0.25, progress=False).fit(digits)
    assert det.image_score_ in CANDIDATES
    assert set(det.image_score_auroc_) == set(CANDIDATES)
    assert all(0 <= v <= 1 for v in det.image_score_auroc_.values())
    # the threshold is set on the chosen score of the held-out normals
    all_scores = det.score_samples(digits)
    gaps = np.abs(det.val_scores_[:, None] - all_scores[None]).min(1)
    assert len(det.val_scores_) == len(digits) - det.n_train_ and gaps.max() < 1e-6
    det.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["scoring"]["image_score"] == det.image_score_
    assert cfg["scoring"]["image_score_option"] == "auto"
    assert cfg["scoring"]["image_score_defect_strength"] == det.image_score_strength_
    assert "image score" in (tmp_path / "m" / "MODEL_CARD.md").read_text()
    back = Detector.load(tmp_path / "m")
    assert back.image_score_ == det.image_score_
    np.testing.assert_allclose(back.score_samples(digits), det.score_samples(digits), rtol=1e-6)


def test_map_max_scores_are_the_maps_maximum_after_the_mean_filter(digits):
    det = Detector("pca", image_score="map_max", progress=False).fit(digits)
    maps = torch.from_numpy(det.anomaly_maps(digits))[:, None]
    np.testing.assert_allclose(
        det.score_samples(digits), map_image_scores(maps)["map_max"].numpy(), rtol=1e-5
    )
    native = Detector("pca", progress=False).fit(digits)
    assert not np.allclose(native.score_samples(digits), det.score_samples(digits))


def test_image_score_choice_leaves_the_detector_unchanged(digits):
    det = Detector("pca", progress=False).fit(digits)
    name, aurocs, strength = det.image_score_choice(digits[:30])
    assert strength in STRENGTHS
    assert name in CANDIDATES and set(aurocs) == set(CANDIDATES)
    assert det.image_score_ == "native" and det.image_score_auroc_ == {}


def test_bad_image_score_options_are_refused(digits):
    with pytest.raises(ValueError, match="choose from"):
        Detector("pca", image_score="best", progress=False).fit(digits)
    with pytest.raises(ValueError, match="produces none"):
        Detector("iforest", image_score="map_max", progress=False).fit(digits)
    with pytest.raises(ValueError, match="applies to the native score"):
        Detector("pca", image_score="map_topk", score_views="multiview", progress=False).fit(digits)
    iforest = Detector("iforest", progress=False).fit(digits)
    with pytest.raises(ValueError, match="no maps"):
        iforest.image_score_choice(digits)


def test_auto_falls_back_to_native_where_there_is_nothing_to_choose(digits):
    # no maps: native, silently
    assert (
        Detector("iforest", image_score="auto", progress=False).fit(digits).image_score_ == "native"
    )
    # too few held-out normals: native, with a warning
    with pytest.warns(UserWarning, match="fewer than"):
        det = Detector("pca", image_score="auto", val_fraction=0.05, progress=False).fit(
            digits[:60]
        )
    assert det.image_score_ == "native" and det.image_score_auroc_ == {}

"""Tiles: cutting, stitching, and a detector that trains on tiles and scores by tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reconad import Detector
from reconad.tiling import cut, grid, origins, per_image_max, stitch
from tests.conftest import digit_zeros


def test_origins_cover_the_side_and_end_at_its_edge():
    assert origins(10, 4, 4) == [0, 4, 6]
    assert origins(8, 4, 2) == [0, 2, 4]
    assert origins(4, 4, 2) == [0]
    with pytest.raises(ValueError, match="exceeds"):
        origins(3, 4, 2)
    with pytest.raises(ValueError, match="stride"):
        origins(8, 4, 0)


def test_cut_then_stitch_gives_the_image_back():
    x = torch.rand(3, 2, 10, 14)
    for stride in (2, 3, 4):
        tiles = cut(x, 4, stride)
        assert tiles.shape == (3 * len(grid((10, 14), 4, stride)), 2, 4, 4)
        torch.testing.assert_close(stitch(tiles, 3, (10, 14), stride), x)
    # tiles are in grid order, image by image
    t = cut(x, 4, 4)
    y, x0 = grid((10, 14), 4, 4)[5]
    torch.testing.assert_close(t[len(grid((10, 14), 4, 4)) + 5], x[1, :, y : y + 4, x0 : x0 + 4])


def test_stitch_averages_overlapping_tiles():
    ones = torch.ones(len(grid((6, 6), 4, 2)), 1, 4, 4)
    ones[0] = 3.0  # the top-left tile alone says 3
    out = stitch(ones, 1, (6, 6), 2)
    assert out[0, 0, 0, 0] == 3.0  # only tile 0 covers the corner
    assert out[0, 0, 2, 2] == pytest.approx((3 + 1 + 1 + 1) / 4)  # four tiles cover (2, 2)


def test_per_image_max():
    v = torch.tensor([1.0, 5.0, 2.0, 0.0, 4.0, 3.0])
    torch.testing.assert_close(per_image_max(v, 2), torch.tensor([5.0, 4.0]))


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return digit_zeros(48)


def test_a_detector_on_tiles_scores_whole_images_and_finds_a_pasted_defect(digits, tmp_path):
    det = Detector("pca", image_size=48, patch=16, progress=False).fit(digits[:150])
    assert det.input_shape_ == (1, 16, 16) and det.read_size_ == (48, 48)
    # 150 images minus 10% held out, 3 x 3 tiles each
    assert det.method_.image_size == (16, 16)
    test = digits[150:].copy()
    board = (np.indices((10, 10)).sum(0) % 2 * 255).astype(np.uint8)
    test[:5, 0, 30:40, 30:40] = board  # a fine checkerboard: no zero digit has one
    scores = det.score_samples(test)
    maps = det.anomaly_maps(test)
    assert scores.shape == (len(test),) and maps.shape == (len(test), 48, 48)
    assert scores[:5].min() > np.median(scores[5:])
    # the map is highest on the square, not elsewhere
    inside = maps[:5, 30:40, 30:40].mean()
    assert inside > 3 * maps[:5, :20, :20].mean()
    ex = det.explain(test[:2], n=2)
    assert ex["maps"].shape == (2, 48, 48)
    det.save(tmp_path / "m")
    inp = json.loads((tmp_path / "m" / "config.json").read_text())["input"]
    assert inp["patch"] == 16 and inp["working_size"] == [48, 48] and inp["height"] == 16
    back = Detector.load(tmp_path / "m")
    np.testing.assert_allclose(back.score_samples(test), scores, rtol=1e-6)


def test_a_deep_method_trains_on_tiles_and_returns_stitched_restorations(digits):
    det = Detector(
        "ae", image_size=48, patch=32, progress=False, hparams={"epochs": 1, "batch_size": 16}
    )
    det.fit(digits[:40])
    ex = det.explain(digits[:3], n=3)
    assert ex["maps"].shape == (3, 48, 48)
    assert all(v.shape[-2:] == (48, 48) for v in ex["extras"].values())


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"patch": 20}, "multiple of 16"),
        ({"patch": 64}, "exceeds the working size"),
        ({"patch": 0}, "a tile side"),
        ({"patch": 16, "score_views": "multiview"}, "native score"),
    ],
)
def test_bad_patch_options_are_refused(digits, kw, words):
    with pytest.raises(ValueError, match=words):
        Detector("ae", image_size=48, progress=False, hparams={"epochs": 1}, **kw).fit(digits[:20])

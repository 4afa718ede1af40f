"""Keeping the aspect ratio: the box, letterboxing and back, and a detector that uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reconad import Detector
from reconad.aspect import content_box, letterbox, unletterbox
from reconad.export import ExportError, export_onnx
from reconad.inputs import resize_uint8


def test_the_box_keeps_the_original_shape_and_is_centred():
    assert content_box((128, 128), (100, 400)) == (48, 0, 32, 128)  # wide: a band
    assert content_box((128, 128), (400, 100)) == (0, 48, 128, 32)  # tall: a column
    assert content_box((128, 128), (300, 300)) == (0, 0, 128, 128)  # square: all of it
    assert content_box((64, 128), (10, 20)) == (0, 0, 64, 128)  # same shape as the frame
    assert content_box((16, 16), (1, 1000)) == (7, 0, 1, 16)  # never thinner than a pixel


def _stripes(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Vertical sine stripes of random phase: texture of one scale along x."""
    rng = np.random.default_rng(seed)
    x = np.arange(w)[None, None, None, :]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1))
    img = 128 + 80 * np.sin(2 * np.pi * x / 12 + phase) + np.zeros((n, 1, h, w))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_letterboxing_shrinks_into_the_box_and_mirrors_the_rest():
    orig = _stripes(2, 24, 72)  # 1 : 3
    squashed = resize_uint8(orig, (48, 48))
    boxed = letterbox(squashed, [(24, 72)] * 2)
    top, left, bh, bw = content_box((48, 48), (24, 72))
    assert (top, bh, left, bw) == (16, 16, 0, 48)
    # the content is the image at its own shape (stripes of one period, 12 * 48 / 72 = 8 px)
    direct = resize_uint8(orig, (16, 48)).astype(float)
    np.testing.assert_allclose(boxed[:, :, top : top + bh].astype(float), direct, atol=3)
    # mirrored above and below: the row next to the box repeats its first / last row
    np.testing.assert_array_equal(boxed[:, :, top - 1], boxed[:, :, top])
    np.testing.assert_array_equal(boxed[:, :, top + bh], boxed[:, :, top + bh - 1])
    # an image of the frame's own shape is left as it is
    same = _stripes(1, 48, 48)
    np.testing.assert_array_equal(letterbox(same, [(96, 96)]), same)


def test_unletterboxing_cuts_the_box_back_to_the_squashed_frame():
    maps = np.zeros((1, 48, 48), np.float32)
    maps[0, 16:32, 36:42] = 1.0  # a spot in the box of a 24 x 72 image (rows 16-31)
    back = unletterbox(maps, [(24, 72)])
    assert back.shape == (1, 48, 48)
    rows, cols = np.nonzero(back[0] > 0.5)
    assert rows.min() <= 2 and rows.max() >= 45  # the box's 16 rows stretched over 48
    assert 34 <= cols.min() and cols.max() <= 43  # columns unchanged
    images = np.zeros((1, 3, 48, 48), np.float32)  # intermediate images too, per channel
    images[0, 1, 16:32] = 1.0
    np.testing.assert_allclose(unletterbox(images, [(24, 72)])[0, 1], 1.0)
    assert unletterbox(images, [(24, 72)])[0, 0].max() == 0.0


@pytest.fixture(scope="module")
def fitted():
    return Detector("pca", image_size=48, keep_aspect=True, progress=False).fit(
        _stripes(120, 24, 72)
    )


def test_a_detector_keeps_the_aspect_ratio_and_maps_a_defect_where_it_is(fitted, tmp_path):
    test = _stripes(6, 24, 72, seed=1)
    test[:3, 0, 0:8, 50:58] = 255  # a bright square at the top edge of three of them
    scores = fitted.score_samples(test)
    assert scores[:3].min() > scores[3:].max()
    maps = fitted.anomaly_maps(test, original_size=True)
    assert all(m.shape == (24, 72) for m in maps)
    for m in maps[:3]:
        y, x = np.unravel_index(np.argmax(m), m.shape)
        assert 46 <= x <= 62  # at the square, in the image's own frame: its top rows
        assert m[:3, 50:58].mean() > 3 * m[12:, 50:58].mean()  # are hot, the bottom not
    ex = fitted.explain(test[:2], n=2)
    assert ex["maps"].shape == (2, 48, 48)
    assert all(v.shape[-2:] == (48, 48) for v in ex["extras"].values())
    fitted.save(tmp_path / "m")
    inp = json.loads((tmp_path / "m" / "config.json").read_text())["input"]
    assert inp["keep_aspect"] is True
    back = Detector.load(tmp_path / "m")
    assert back.keep_aspect is True
    np.testing.assert_allclose(back.score_samples(test), scores, rtol=1e-6)


def test_the_option_changes_what_the_network_sees_only_for_other_shapes(fitted):
    wide = _stripes(4, 24, 72, seed=2)
    seen = fitted._prepare(fitted._as_set(wide))
    for k in range(3):  # the band above the box mirrors the box's first rows
        np.testing.assert_array_equal(seen[:, :, 15 - k], seen[:, :, 16 + k])
    square = _stripes(4, 48, 48, seed=3)
    np.testing.assert_array_equal(fitted._prepare(fitted._as_set(square)), square)


def test_bad_keep_aspect_and_export_are_refused(fitted, tmp_path):
    with pytest.raises(ValueError, match="keep_aspect='yes': True or False"):
        Detector("pca", keep_aspect="yes", progress=False).fit(_stripes(20, 24, 72))
    with pytest.raises(ExportError, match="--keep-aspect"):
        export_onnx(fitted, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()

"""The Detector facade: fit/score/predict/maps on real MNIST, save/load, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reconad import DataError, Detector, list_methods
from reconad.detector import NotFittedError
from reconad.metrics import image_auroc

QUICK = {"epochs": 20, "batch_size": 16}


@pytest.fixture(scope="module")
def fitted(mnist_small):
    train, _, _ = mnist_small
    return Detector("ae", progress=False, hparams=QUICK).fit(train)


def test_list_methods_names_the_spine_methods():
    assert {"ae", "ssim_ae", "pca", "iforest", "ocsvm"} <= set(list_methods())


def test_constructor_only_stores_parameters():
    det = Detector("ae", seed=3, hparams={"epochs": 2})
    assert det.seed == 3 and det.hparams == {"epochs": 2}
    assert not hasattr(det, "method_")
    with pytest.raises(NotFittedError):
        det.score_samples(np.zeros((1, 28, 28), np.uint8))


def test_fit_learns_to_separate_real_digits(fitted, mnist_small):
    _, test, anomalous = mnist_small
    scores = fitted.score_samples(test)
    assert scores.shape == (len(test),) and scores.dtype.kind == "f"
    assert image_auroc(anomalous, scores) > 0.85
    # MNIST's 28x28 is rounded up to the architecture's multiple of 16.
    assert fitted.input_shape_ == (1, 32, 32)
    # 10% of the 512 training images were held out to calibrate.
    assert fitted.n_train_ == 461 and len(fitted.val_scores_) == 51


def test_threshold_comes_from_held_out_normals(fitted):
    # 5% FPR on 51 held-out normals: at most 2 of them score above the threshold.
    above = (fitted.val_scores_ > fitted.threshold_).sum()
    assert above <= 2 and above >= 1


def test_predict_uses_the_threshold_and_an_override(fitted, mnist_small):
    _, test, _ = mnist_small
    scores = fitted.score_samples(test)
    np.testing.assert_array_equal(fitted.predict(test), (scores > fitted.threshold_).astype(int))
    assert fitted.predict(test, threshold=-1.0).all()
    assert not fitted.predict(test, threshold=np.inf).any()


def test_inputs_arrays_tensors_floats_and_channels_last_agree(fitted, mnist_small):
    _, test, _ = mnist_small
    u8 = test.images[:8]
    ref = fitted.score_samples(u8)
    np.testing.assert_allclose(fitted.score_samples(u8[:, 0]), ref)  # (N, H, W)
    np.testing.assert_allclose(fitted.score_samples(u8.transpose(0, 2, 3, 1)), ref)  # NHWC
    np.testing.assert_allclose(fitted.score_samples(torch.from_numpy(u8)), ref)
    np.testing.assert_allclose(fitted.score_samples(u8 / 255.0), ref, rtol=1e-6)


def test_channels_last_scoring_agrees_and_leaves_the_usual_layout(fitted, mnist_small):
    _, test, _ = mnist_small
    u8 = test.images[:40]
    assert fitted.method_.channels_last  # the AE scores channels-last
    fast = fitted.score_samples(u8)
    fast_maps = fitted.anomaly_maps(u8)
    assert all(p.is_contiguous() for p in fitted.method_.parameters())  # put back
    type(fitted.method_).channels_last = False
    try:
        plain, plain_maps = fitted.score_samples(u8), fitted.anomaly_maps(u8)
    finally:
        type(fitted.method_).channels_last = True
    np.testing.assert_allclose(fast, plain, rtol=1e-4)
    np.testing.assert_allclose(fast_maps, plain_maps, rtol=1e-3, atol=1e-6)


def test_image_files_and_folders_are_read(fitted, mnist_small, tmp_path):
    from PIL import Image

    _, test, _ = mnist_small
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(test.images[i, 0]).save(paths[-1])
    ref = fitted.score_samples(test.images[:3])
    np.testing.assert_allclose(fitted.score_samples([str(p) for p in paths]), ref, rtol=1e-6)
    np.testing.assert_allclose(fitted.score_samples(tmp_path), ref, rtol=1e-6)


def test_anomaly_maps_at_model_and_original_size(fitted, mnist_small):
    _, test, _ = mnist_small
    maps = fitted.anomaly_maps(test.images[:4])
    assert maps.shape == (4, 32, 32) and (maps >= 0).all()
    orig = fitted.anomaly_maps(test.images[:4], original_size=True)
    assert [m.shape for m in orig] == [(28, 28)] * 4
    # The image score of the plain AE is the mean of its map.
    np.testing.assert_allclose(
        maps.mean(axis=(1, 2)), fitted.score_samples(test.images[:4]), rtol=1e-5
    )


def test_explain_returns_the_intermediate_images(fitted, mnist_small):
    _, test, _ = mnist_small
    ex = fitted.explain(test.images[:5], n=3)
    assert set(ex["extras"]) == {"input", "reconstruction", "error"}
    assert ex["extras"]["reconstruction"].shape == (3, 1, 32, 32)


def test_save_load_round_trip(fitted, mnist_small, tmp_path):
    _, test, _ = mnist_small
    path = fitted.save(tmp_path / "model")
    names = sorted(p.name for p in path.iterdir())
    assert names == ["MODEL_CARD.md", "config.json", "weights.safetensors"]
    cfg = json.loads((path / "config.json").read_text())
    card = (path / "MODEL_CARD.md").read_text()
    assert "`ae`" in card and f"{fitted.threshold_}" in card and str(cfg["provenance"]) in card
    assert cfg["method"] == "ae" and cfg["input"] == {"channels": 1, "height": 32, "width": 32}
    assert cfg["calibration"]["threshold"] == pytest.approx(fitted.threshold_)
    assert cfg["hparams"]["epochs"] == 20 and cfg["versions"]["torch"]
    loaded = Detector.load(path)
    np.testing.assert_array_equal(loaded.score_samples(test), fitted.score_samples(test))
    # per-stage training time, summed from the saved history
    assert set(fitted.stage_seconds_) == {h["stage"] for h in fitted.history_} != set()
    assert loaded.stage_seconds_ == fitted.stage_seconds_
    assert sum(fitted.stage_seconds_.values()) == pytest.approx(
        sum(h["seconds"] for h in fitted.history_)
    )
    np.testing.assert_array_equal(loaded.predict(test), fitted.predict(test))
    # Saving again over an existing model replaces it whole and leaves no temporary folder.
    fitted.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_weights_file_is_not_a_pickle(fitted, tmp_path):
    path = fitted.save(tmp_path / "m")
    head = (path / "weights.safetensors").read_bytes()[:16]
    assert not head.startswith(b"\x80")  # pickle protocol marker
    assert not (path / "weights.safetensors").read_bytes()[:2] == b"PK"  # torch.save zip


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        Detector.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a reconad-model"):
        Detector.load(tmp_path)


def test_wrong_channel_count_is_a_clear_error(fitted):
    rgb = np.zeros((2, 3, 28, 28), np.uint8)
    with pytest.raises(DataError, match="expects 1-channel images; got 3"):
        fitted.score_samples(rgb)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((2, 28, 28), 2.0), r"float images must lie in \[0, 1\]"),
        (np.full((2, 28, 28), np.nan), "NaN"),
        (np.zeros((2, 5, 28, 28)), "channel axis"),
        (np.zeros((0, 28, 28), np.uint8), "empty"),
        (np.zeros((2, 28, 28), bool), "numeric"),
        (np.zeros((1, 1, 1, 28, 28)), "must be"),
        ({"not": "images"}, "cannot read images"),
    ],
)
def test_bad_arrays_are_clear_errors(fitted, bad, message):
    with pytest.raises(DataError, match=message):
        fitted.score_samples(bad)


def test_unknown_method_and_hyper_parameter():
    x = np.zeros((10, 28, 28), np.uint8)
    with pytest.raises(KeyError, match="unknown method"):
        Detector("nope").fit(x)
    with pytest.raises(ValueError, match="no hyper-parameter"):
        Detector("ae", hparams={"learning_rat": 1}).fit(x)
    # hyper-parameters as keywords (as before hparams=) are refused, saying where they go
    with pytest.raises(TypeError, match=r"hparams=\{'epochs': 2\}"):
        Detector("ae", epochs=2)


def test_predict_without_held_out_normals_asks_for_a_threshold(mnist_small):
    train, test, _ = mnist_small
    det = Detector("pca", val_fraction=0.0, progress=False).fit(train)
    with pytest.raises(NotFittedError, match="threshold"):
        det.predict(test)
    assert det.predict(test, threshold=0.0).all()


def test_scores_standardised_on_held_out_normals_refuse_to_fit_without_them():
    """Not silently uncalibrated: refused before any training is spent."""
    from reconad.methods import get_method

    x = np.random.default_rng(0).integers(0, 255, (20, 28, 28), dtype=np.uint8)
    for method, hp in (("ddrid", {}), ("arnet", {"normalize_rotations": True}), ("rotnet_ae", {})):
        with pytest.raises(ValueError, match="standardised on held-out"):
            Detector(method, val_fraction=0.0, progress=False, hparams=hp).fit(x)
    for method, hp in (("ddrid", {"score": "latent"}), ("arnet", {}), ("ae", {})):
        cls = get_method(method)
        assert not cls.needs_held_out(cls.make_config(**hp)), method


@pytest.mark.parametrize("method", ["pca", "iforest", "ocsvm"])
def test_classical_baselines_behind_the_same_facade(method, mnist_small, tmp_path):
    train, test, anomalous = mnist_small
    det = Detector(method, progress=False).fit(train)
    assert det.input_shape_ == (1, 28, 28)  # raw pixels: no rounding up
    scores = det.score_samples(test)
    assert image_auroc(anomalous, scores) > 0.9
    loaded = Detector.load(det.save(tmp_path / method))
    np.testing.assert_allclose(loaded.score_samples(test), scores, rtol=1e-6)
    if method == "iforest":
        with pytest.raises(ValueError, match="no maps"):
            det.anomaly_maps(test)


def test_explicit_validation_set_is_used(mnist_small):
    train, test, _ = mnist_small
    det = Detector("pca", progress=False).fit(
        train.subset(np.arange(400)), validation=train.subset(np.arange(400, 512))
    )
    assert det.n_train_ == 400 and len(det.val_scores_) == 112


def test_per_image_normalisation_evens_out_lighting_and_survives_save_load(tmp_path):
    """Issue 21 item 3: the same part under brighter light maps to the same input."""
    from reconad.inputs import normalize_intensity

    rng = np.random.default_rng(0)
    base = rng.integers(60, 120, (12, 1, 16, 16)).astype(np.uint8)
    bright = np.clip(base.astype(int) * 2 + 10, 0, 255).astype(np.uint8)
    a, b = normalize_intensity(base), normalize_intensity(bright)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert abs(a.mean() - 128) < 1 and abs(a[0].std() - 48) < 1
    flat = np.full((1, 1, 4, 4), 7, np.uint8)
    assert (normalize_intensity(flat) == 128).all()  # no division by zero
    assert normalize_intensity(base, "none") is base
    with pytest.raises(ValueError, match="normalize='gamma'"):
        Detector("pca", normalize="gamma").fit(base)

    det = Detector("pca", normalize="image").fit(base)
    assert np.allclose(det.score_samples(base), det.score_samples(bright), atol=1e-3)
    det.save(tmp_path / "m")
    back = Detector.load(tmp_path / "m")
    assert back.normalize == "image"
    assert np.allclose(back.score_samples(bright), det.score_samples(bright))


def test_large_images_without_a_size_train_at_the_working_resolution_and_say_so():
    imgs = np.random.default_rng(0).integers(0, 255, (6, 1, 600, 900), dtype=np.uint8)
    with pytest.warns(UserWarning, match="images are 600x900; training at 85x128"):
        det = Detector("pca", val_fraction=0).fit(imgs)
    assert det.input_shape_ == (1, 85, 128)  # aspect ratio kept, not squashed to a square

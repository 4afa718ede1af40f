"""Multi-view scoring and difficulty normalisation (reconad.scoring) and its Detector wiring."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reconad import Detector
from reconad.cli import app
from reconad.methods import get_method
from reconad.methods.base import Method
from reconad.scoring import (
    MULTIVIEW,
    RandomFeatures,
    ScoreFusion,
    ScoringSpec,
    bits_per_pixel,
    compute_views,
    difficulty,
    feature_dissimilarity,
    gray_entropy,
    mean_gradient,
)

ONE_EPOCH = {"epochs": 1}


def _levels(values: list[int], counts: list[int]) -> torch.Tensor:
    """A 1x1x32x32 image holding gray ``values`` with pixel ``counts`` (sum 1024)."""
    px = np.concatenate([np.full(c, v, np.uint8) for v, c in zip(values, counts, strict=True)])
    return torch.from_numpy(px.reshape(1, 1, 32, 32)).float() / 255.0


def test_entropy_of_known_histograms():
    assert gray_entropy(_levels([7], [1024])).item() == 0.0
    assert gray_entropy(_levels([0, 255], [512, 512])).item() == pytest.approx(1.0)
    assert gray_entropy(_levels([0, 50, 100, 200], [256] * 4)).item() == pytest.approx(2.0)
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))  # 0.811 bits
    assert gray_entropy(_levels([10, 20], [768, 256])).item() == pytest.approx(expected)
    # Colour images are measured on their gray version: equal channels = the gray image.
    x = _levels([0, 255], [512, 512])
    assert gray_entropy(x.repeat(1, 3, 1, 1)).item() == pytest.approx(1.0)


def test_bpp_of_a_constant_image_is_below_that_of_noise():
    gen = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (1, 1, 32, 32), generator=gen).float() / 255
    const = torch.full((1, 1, 32, 32), 0.5)
    b_const, b_noise = bits_per_pixel(const).item(), bits_per_pixel(noise).item()
    assert b_const < 0.5 < 7.0 < b_noise  # incompressible noise costs about 8 bits a pixel
    rgb = bits_per_pixel(torch.rand(2, 3, 16, 16, generator=gen))
    assert rgb.shape == (2,) and (rgb > 16).all()  # three noisy channels per pixel


def test_gradient_is_zero_on_flat_images_and_grows_with_edges():
    flat = torch.full((1, 1, 16, 16), 0.3)
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0
    stripes = torch.zeros(1, 1, 16, 16)
    stripes[..., ::4] = stripes[..., 1::4] = 1.0  # many edges (period-2 stripes have none
    # under a central-difference kernel)
    g = mean_gradient(torch.cat([flat, edge, stripes]))
    assert g[0] == pytest.approx(0.0, abs=1e-3) and g[0] < g[1] < g[2]
    with pytest.raises(ValueError, match="unknown difficulty"):
        difficulty(flat, "jpeg")


def test_subtractive_beta_recovers_a_planted_linear_trend():
    rng = np.random.default_rng(0)
    d = rng.uniform(1, 5, 500)
    v = 0.3 + 2.5 * d + rng.normal(0, 0.05, 500)
    fusion = ScoreFusion(("native",), "entropy", "subtract").fit({"native": v, "difficulty": d})
    assert fusion.beta_["native"] == pytest.approx(2.5, abs=0.02)
    s = fusion.transform({"native": v, "difficulty": d})
    assert abs(np.corrcoef(s, d)[0, 1]) < 0.05  # the trend is gone
    assert np.corrcoef(v, d)[0, 1] > 0.99


def test_divisive_normalisation_removes_a_proportional_trend():
    rng = np.random.default_rng(1)
    d = rng.uniform(1, 5, 500)
    v = d * rng.uniform(0.9, 1.1, 500)  # error proportional to difficulty
    fusion = ScoreFusion(("native",), "bpp", "divide").fit({"native": v, "difficulty": d})
    s = fusion.transform({"native": v, "difficulty": d})
    assert abs(np.corrcoef(s, d)[0, 1]) < 0.1
    # A blank image (difficulty 0) is divided by the floor, not by zero.
    one = fusion.transform({"native": np.array([0.1]), "difficulty": np.array([0.0])})
    assert np.isfinite(one).all()


def test_standardisation_uses_the_normals_it_is_fitted_on():
    rng = np.random.default_rng(2)
    normals = {k: rng.normal(i + 1, i + 1, 200) for i, k in enumerate(MULTIVIEW)}
    fusion = ScoreFusion(MULTIVIEW).fit(normals)
    for k in MULTIVIEW:
        assert fusion.stats_[k].mean_ == pytest.approx(normals[k].mean())
        assert fusion.stats_[k].std_ == pytest.approx(normals[k].std(ddof=1))
    fused = fusion.transform(normals)
    assert fused.mean() == pytest.approx(0.0, abs=1e-9)
    assert fused.std() == pytest.approx(np.sqrt(3.0), rel=0.3)  # 3 roughly independent views
    at_mean = {k: np.array([normals[k].mean()]) for k in MULTIVIEW}
    assert fusion.transform(at_mean)[0] == pytest.approx(0.0, abs=1e-9)


def test_fusion_rejects_bad_options_and_use_before_fit():
    with pytest.raises(ValueError, match="views"):
        ScoreFusion(("mse", "psnr"))
    with pytest.raises(ValueError, match="difficulty"):
        ScoreFusion(("mse",), "jpeg")
    with pytest.raises(ValueError, match="mode"):
        ScoreFusion(("mse",), "entropy", "multiply")
    with pytest.raises(RuntimeError, match="not fitted"):
        ScoreFusion(("mse",)).transform({"mse": np.zeros(3)})
    with pytest.raises(ValueError, match="difficulty"):
        ScoreFusion(("mse",), "entropy").fit({"mse": np.arange(4.0)})  # D missing


class _Identity(Method):
    """A perfect reconstruction, with no encoder of its own (unregistered)."""

    name = "identity"

    def score(self, x):
        raise AssertionError("multi-view scoring must not need the native score")

    def reconstruct(self, x):
        return x.clone()


def test_multiview_of_a_perfect_reconstruction_is_the_normal_mean_score():
    m = _Identity(None, 1, (16, 16))
    gen = torch.Generator().manual_seed(0)
    normals, others = torch.rand(20, 1, 16, 16, generator=gen), torch.rand(5, 1, 16, 16)
    views = compute_views(m, normals, MULTIVIEW)
    assert all((views[k] == 0).all() for k in MULTIVIEW)  # exactly zero, no rounding
    fusion = ScoreFusion(MULTIVIEW).fit({k: v.numpy() for k, v in views.items()})
    normal_scores = fusion.transform({k: v.numpy() for k, v in views.items()})
    test = fusion.transform({k: v.numpy() for k, v in compute_views(m, others, MULTIVIEW).items()})
    np.testing.assert_array_equal(test, np.full(5, normal_scores.mean()))


def test_feature_fallback_is_a_fixed_random_network():
    a, b = RandomFeatures(3, seed=0), RandomFeatures(3, seed=0)
    x = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(a(x), b(x))
    assert not torch.allclose(a(x), RandomFeatures(3, seed=1)(x))
    f = a(x)
    assert feature_dissimilarity(f, f).abs().max() == 0
    assert feature_dissimilarity(f, -f).min() == pytest.approx(2.0)  # opposite: 1 - cos = 2


def _mnist(mnist_small, n_train=240, n_val=60):
    train, test, anomalous = mnist_small
    return (
        train.subset(np.arange(n_train)),
        train.subset(np.arange(n_train, n_train + n_val)),
        test.subset(np.r_[0:40, 200:240]),
    )


def test_detector_fits_multiview_on_the_held_out_normals(mnist_small):
    train, val, _ = _mnist(mnist_small)
    det = Detector("ae", progress=False, hparams=ONE_EPOCH, score_views="multiview").fit(
        train, validation=val
    )
    from reconad.inputs import resize_uint8

    x = torch.from_numpy(resize_uint8(val.images, (32, 32))).float() / 255
    with torch.no_grad():
        views = compute_views(det.method_.eval(), x, MULTIVIEW)
    for k in MULTIVIEW:
        assert det.scoring_.stats_[k].mean_ == pytest.approx(float(views[k].mean()), rel=1e-6)
    assert det.val_scores_.mean() == pytest.approx(0.0, abs=1e-6)
    assert det.val_scores_.shape == (len(val),)


def test_multiview_scoring_skips_the_native_pass_when_nothing_needs_it(mnist_small):
    """ae has no components: asking for them must not cost a ``score`` pass per batch."""
    train, val, test = _mnist(mnist_small)
    det = Detector("ae", progress=False, hparams=ONE_EPOCH, score_views="multiview").fit(
        train, validation=val
    )
    expected = det.score_samples(test)
    calls = []
    original = det.method_.score
    det.method_.score = lambda x: calls.append(len(x)) or original(x)
    scored = det.explain(test, n=0, maps=False)
    assert calls == [] and scored["components"] == {}
    np.testing.assert_allclose(scored["scores"], expected, rtol=1e-6)


def test_multiview_detector_survives_save_and_load(mnist_small, tmp_path):
    train, val, test = _mnist(mnist_small)
    det = Detector(
        "ae",
        progress=False,
        hparams=ONE_EPOCH,
        score_views="multiview",
        difficulty="entropy",
        difficulty_mode="subtract",
    ).fit(train, validation=val)
    det.save(tmp_path / "m")
    back = Detector.load(tmp_path / "m")
    assert (back.score_views, back.difficulty, back.difficulty_mode) == (
        "multiview",
        "entropy",
        "subtract",
    )
    np.testing.assert_array_equal(det.score_samples(test), back.score_samples(test))
    assert back.threshold_ == det.threshold_
    assert back.anomaly_maps(test).shape == (len(test), 32, 32)


def test_multiview_needs_a_reconstruction(mnist_small):
    train, _, _ = _mnist(mnist_small)
    with pytest.raises(ValueError, match="reconstruct"):
        Detector("iforest", score_views="multiview").fit(train)
    with pytest.raises(ValueError, match="difficulty"):
        Detector("ae", difficulty="jpeg").fit(train)
    with pytest.raises(ValueError, match="held-out"):
        Detector("ae", score_views="multiview", val_fraction=0.0).fit(train)


@pytest.mark.parametrize("method", ["rotnet_ae", "ddrid", "ocsvm"])
def test_dividing_a_signed_native_score_is_refused(method):
    cls = get_method(method)
    with pytest.raises(ValueError, match="negative.*subtract"):
        ScoringSpec("native", "entropy", "divide").check(cls)
    ScoringSpec("native", "entropy", "subtract").check(cls)  # allowed
    ScoringSpec("multiview", "entropy", "divide").check(
        cls if method != "ocsvm" else get_method("ae")
    )
    ScoringSpec("native", "entropy", "divide").check(get_method("ae"))  # MSE is never negative


def test_subtract_without_a_difficulty_is_refused():
    with pytest.raises(ValueError, match="needs a difficulty"):
        ScoringSpec("multiview", "none", "subtract").check(get_method("ae"))


def test_fusion_refuses_to_divide_a_negative_view():
    values = {"native": np.array([-1.0, 0.5, 2.0]), "difficulty": np.array([1.0, 2.0, 3.0])}
    with pytest.raises(ValueError, match="negative.*subtract"):
        ScoreFusion(("native",), "entropy").fit(values)
    ScoreFusion(("native",), "entropy", "subtract").fit(values)


def test_a_method_setting_named_score_is_not_taken_for_the_scoring_option(mnist_small):
    train, _, _ = _mnist(mnist_small)
    with pytest.raises(TypeError, match=r"score_views='latent'.*hparams=\{'score': 'latent'\}"):
        Detector("ddrid", score="latent")
    with pytest.raises(ValueError, match="--set score=latent"):
        Detector("ddrid", score_views="latent").fit(train)
    det = Detector("ddrid", hparams={"score": "latent"}, epochs_scale=0.05, progress=False)
    det.fit(train)
    assert det.method_.config.score == "latent" and det.score_views == "native"
    some = train.subset(np.arange(20))
    latent = det.explain(some, maps=False)["components"]["latent"]
    np.testing.assert_allclose(det.score_samples(some), latent, rtol=1e-5)


def test_cli_rejects_bad_scoring_before_training(tmp_path):
    r = CliRunner().invoke(
        app, ["fit", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--method", "iforest",
              "--score", "multiview"],
    )  # fmt: skip
    assert r.exit_code == 2 and "reconstruct" in r.output
    r = CliRunner().invoke(
        app, ["benchmark", "--dataset", "fmnist", "--difficulty", "jpeg", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "difficulty" in r.output


def test_score_variant_reuses_the_trained_network(mnist_small):
    """One fit, several scoring options: each variant equals a detector fitted with it."""
    train, val, test = _mnist(mnist_small)
    plain = Detector("ae", progress=False, hparams=ONE_EPOCH).fit(train, validation=val)
    fused = Detector(
        "ae", progress=False, hparams=ONE_EPOCH, score_views="multiview", difficulty="entropy",
        difficulty_mode="subtract",
    ).fit(train, validation=val)  # fmt: skip
    variant = plain.score_variant(test, val, "multiview", "entropy", "subtract")
    np.testing.assert_allclose(variant, fused.score_samples(test), rtol=1e-6, atol=1e-9)
    # ... and the native variant of the fused detector is the plain detector's score,
    # while the fused detector keeps scoring as before.
    np.testing.assert_allclose(
        fused.score_variant(test, val), plain.score_samples(test), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(fused.score_samples(test), variant, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="reconstruct"):
        Detector("iforest").fit(train, validation=val).score_variant(test, val, "multiview")


@pytest.mark.parametrize(
    "tag, parsed",
    [
        ("native", ("native", "none", "divide")),
        ("multiview", ("multiview", "none", "divide")),
        ("+multiview+entropy", ("multiview", "entropy", "divide")),
        ("multiview+entropy-subtract", ("multiview", "entropy", "subtract")),
        ("bpp-subtract", ("native", "bpp", "subtract")),
    ],
)
def test_parse_inverts_name(tag, parsed):
    assert ScoringSpec.parse(tag) == ScoringSpec(*parsed)
    assert ScoringSpec.parse(ScoringSpec(*parsed).name or "native") == ScoringSpec(*parsed)


@pytest.mark.parametrize("tag", ["jpeg", "multiview+entropy+bpp", "multiview+sharpness"])
def test_parse_rejects_unknown_tags(tag):
    with pytest.raises(ValueError, match="scoring variant"):
        ScoringSpec.parse(tag)


def test_pca_is_a_reconstruction_method_for_multiview(mnist_small):
    train, val, test = _mnist(mnist_small)
    det = Detector("pca").fit(train, validation=val)
    x = torch.from_numpy(test.images[:8]).float() / 255.0
    rec = det.method_.reconstruct(x)
    assert rec.shape == x.shape and 0 <= float(rec.min()) and float(rec.max()) <= 1
    err = det.method_.score(x).image_score  # the unclipped projection's error
    clipped = (x - rec).square().flatten(1).sum(1)  # clipping to [0, 1] moves it towards x
    assert bool((clipped <= err + 1e-4).all()) and bool((clipped > 0.5 * err).all())
    mv = det.score_variant(test, val, "multiview")
    assert mv.shape == (len(test),) and np.isfinite(mv).all()


def test_benchmark_reports_scoring_variants_of_one_fit(tmp_path):
    from tests.conftest import shared

    r = CliRunner().invoke(
        app, ["benchmark", "--dataset", "mnist", "--method", "pca", "--classes", "1",
              "--data-root", str(shared("mnist").parent), "--out", str(tmp_path),
              "--no-progress", "--also-score", "native,entropy-subtract"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "class1_seed0.json").read_text())
    assert rec["components"]["+native"] == pytest.approx(rec["auroc"])
    assert rec["components"]["+entropy-subtract"] != pytest.approx(rec["auroc"])
    assert 0 <= rec["components"]["+entropy-subtract"] <= 100
    assert "+entropy-subtract" in r.output  # a column of the printed table
    root = str(shared("mnist").parent)
    args = ["benchmark", "--dataset", "mnist", "--method", "pca", "--classes", "1",
            "--data-root", root, "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    r = CliRunner().invoke(app, [*args, "--also-score", "native"])  # a subset: kept as it is
    assert r.exit_code == 0 and "again" not in r.output, r.output
    r = CliRunner().invoke(app, [*args, "--also-score", "native,entropy"])  # a new variant
    assert r.exit_code == 0 and "lacks +entropy: running it again" in r.output, r.output
    again = json.loads((tmp_path / "class1_seed0.json").read_text())
    assert again["auroc"] == pytest.approx(rec["auroc"]) and "+entropy" in again["components"]
    r = CliRunner().invoke(
        app, ["benchmark", "--dataset", "mnist", "--also-score", "jpeg", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "scoring variant" in r.output


def test_map_image_scores_read_a_small_blob_not_a_lone_hot_pixel():
    from reconad.scoring import map_image_scores, mean_filter_side

    assert [mean_filter_side((s, s), 21) for s in (256, 128, 64, 32)] == [21, 11, 5, 3]
    amap = torch.zeros(2, 1, 64, 64)
    amap[0, 0, 10, 10] = 1.0  # one hot pixel
    amap[1, 0, 30:35, 30:35] = 0.5  # a 5x5 blob, fainter
    read = map_image_scores(amap)  # 5x5 mean filter at 64 px, top 1% = 41 pixels
    assert torch.allclose(read["map_max"], torch.tensor([1 / 25, 0.5]))
    assert torch.allclose(read["map_topk"], torch.tensor([1 / 41, 25 * 0.5 / 41]))
    assert (read["map_max"][1] > read["map_max"][0]) and amap[0].max() > amap[1].max()

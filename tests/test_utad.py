"""UTAD: network shapes, the two training stages, the anomaly map, flags, resume, real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reconad.methods import get_method
from reconad.methods.utad import UTAD
from reconad.methods.utad.discriminators import MultiScaleDiscriminator
from reconad.methods.utad.expert_net import ExpertNet
from reconad.methods.utad.ie_net import IENet
from reconad.methods.utad.losses import anomaly_map, match_range, residual, smoothed_max
from reconad.training import TrainConfig, stage_epochs, train
from tests.conftest import shared

EXTRAS = {"input", "impression", "reconstruction", "naive_impression", "map"}
QUICK = {"n_samples": 2, "ie_batch_size": 8, "expert_batch_size": 4}


def _utad(channels=1, size=64, preset="cpu", **kw) -> UTAD:
    torch.manual_seed(0)
    return UTAD(UTAD.make_config(preset, **{**QUICK, **kw}), channels, (size, size))


def _step(m: UTAD, stage: str, x: torch.Tensor, opts=None) -> dict[str, float]:
    """One training step as the loop does it: each loss into its own group, then all step."""
    st = {s.name: s for s in m.stages()}[stage]
    opts = opts or {n: torch.optim.Adam(g.parameters(), g.lr) for n, g in st.groups.items()}
    m.train()
    out = m.training_step(x, stage)
    for o in opts.values():
        o.zero_grad()
    names = list(out)
    for i, n in enumerate(names):
        out[n].backward(inputs=st.groups[n].parameters(), retain_graph=i < len(names) - 1)
    for o in opts.values():
        o.step()
    return {n: float(v.detach()) for n, v in out.items()}


def test_paper_preset_has_the_published_networks():
    m = UTAD(UTAD.make_config("paper", n_samples=1), 3, (256, 256)).eval()
    c = m.config
    assert c.preset == "paper" and (c.ie_epochs, c.ie_batch_size, c.ie_lr) == (400, 128, 1e-3)
    assert (c.w_recon, c.w_kl, c.w_gan_img, c.w_mi_local, c.w_mi_global) == (
        100,
        0.1,
        0.1,
        1.5,
        0.5,
    )
    assert (c.w_gan, c.w_recon_x, c.w_recon_detail, c.w_recon_content) == (1, 10, 1, 1)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        imp, latent = m.ie(x)
        local, mean, _ = m.ie.info(latent)
        content, detail = m.expert.image.encode(2 * x - 1)
    assert imp.shape == x.shape and latent.shape == (1, 512, 8, 8)
    assert local.shape == (1, 512, 4, 4) and mean.shape == (1, 128)
    assert content.shape == (1, 256, 64, 64) and detail.shape == (1, 8)
    assert [o.shape[1:] for o in m.dis_image(x)] == [(1, 16, 16), (1, 8, 8), (1, 4, 4)]
    assert len(m.image_dis(x)) == 3
    assert get_method("utad").make_config().preset == "cpu"  # the default, recorded


@pytest.mark.parametrize("channels", [1, 3])
def test_networks_keep_shapes_and_ranges(channels):
    ie = IENet(channels, (4, 8, 8)).eval()
    x = torch.rand(2, channels, 128, 96)
    with torch.no_grad():
        m, latent = ie(x)
        local, mean, log_var = ie.info(latent)
    assert m.shape == x.shape and 0 <= m.min() and m.max() <= 1
    assert latent.shape == (2, 32, 4, 3) and local.shape == (2, 32, 2, 1)
    assert mean.shape == log_var.shape == (2, 8)
    ex = ExpertNet(channels, dim=4, detail_dim=8, mlp_dim=16, n_res=2)
    with torch.no_grad():
        c, s = ex.image.encode(2 * x - 1)
        y = ex.image.decode(c, torch.randn(2, 8))
    assert c.shape == (2, 16, 32, 24) and s.shape == (2, 8)
    assert y.shape == x.shape and y.abs().max() <= 1
    outs = MultiScaleDiscriminator(channels, 4, scales=2)(x)
    assert [o.shape for o in outs] == [(2, 1, 8, 6), (2, 1, 4, 3)]


def test_score_gives_the_named_intermediates_in_range():
    m = _utad(3).eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out = m.score(x)
        recon = m.reconstruct(x)
    assert set(out.extras) == EXTRAS
    for k in ("impression", "reconstruction", "naive_impression"):
        v = out.extras[k]
        assert v.shape == x.shape and 0 <= v.min() and v.max() <= 1, k
    assert out.anomaly_map.shape == (3, 1, 64, 64) and out.anomaly_map.min() >= 0
    torch.testing.assert_close(recon, out.extras["reconstruction"])
    assert m.features(x) is None
    assert set(m.score_components(x)) == {"map_mean", "recon_ssim"}


def test_anomaly_map_formula_on_hand_made_images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g)
    same = x[None].expand(3, -1, -1, -1, -1)
    assert anomaly_map(x, x, x, same, same).abs().max() < 1e-4  # identical: nothing flagged
    # Only the naive impressions differ: e = r(x, mean m_hat).
    naive = (1 - x)[None]
    expected = residual(x, 1 - x)
    torch.testing.assert_close(anomaly_map(x, x, x, naive, same), expected)
    assert expected.mean() > 0.3
    # Detail variance is subtracted (two constant samples 0 and 0.6: variance 0.09) ...
    samples = torch.stack([torch.zeros_like(x), torch.full_like(x, 0.6)])
    got = anomaly_map(x, x, x, naive, samples)
    torch.testing.assert_close(got, (expected - 0.09).clamp_min(0))
    # ... and so is r(x_hat, m); the map is clamped at 0, never negative.
    far = anomaly_map(x, 1 - x, x, same, same)
    assert far.min() == 0 and far.max() < 1e-4
    # Colour images are compared in gray.
    rgb = x.expand(-1, 3, -1, -1)
    assert anomaly_map(rgb, rgb, rgb, rgb[None], rgb[None]).shape == (2, 1, 32, 32)


def test_official_arithmetic_options_change_the_map_as_stated():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 32, 32, generator=g)
    naive = (1 - x)[None]
    samples = torch.stack([torch.zeros_like(x), torch.full_like(x, 0.02)])  # variance 1e-4
    base = anomaly_map(x, x, x, naive, samples)
    heavy = anomaly_map(x, x, x, naive, samples, var_weight=255.0)
    torch.testing.assert_close(heavy, (base + 1e-4 - 255.0 * 1e-4).clamp_min(0))
    # A larger SSIM data range means larger constants: smaller residuals, never larger.
    dark = 0.1 * x
    wide, narrow = residual(dark, 0.1 * (1 - x), max_val=2.0), residual(dark, 0.1 * (1 - x))
    assert (wide <= narrow + 1e-6).all() and wide.mean() < narrow.mean()
    # Range matching maps each image and channel linearly onto the reference's [min, max].
    img = torch.rand(2, 3, 8, 8, generator=g) * 0.5 + 0.2
    ref = torch.rand(2, 3, 8, 8, generator=g)
    out = match_range(img, ref)
    torch.testing.assert_close(out.amin((-2, -1)), ref.amin((-2, -1)))
    torch.testing.assert_close(out.amax((-2, -1)), ref.amax((-2, -1)))
    flat = match_range(torch.full((1, 1, 4, 4), 0.3), ref[:1, :1])  # constant: no NaN
    assert torch.isfinite(flat).all()


def test_scoring_options_leave_the_networks_and_reach_the_map():
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    plain = _utad().eval()
    with torch.no_grad():
        ref = plain.score(x)
        for kw in ({"var_weight": 255.0}, {"ssim_range": 2.0}, {"match_range": True}):
            m = _utad(**kw).eval()
            m.load_state_dict(plain.state_dict())  # same weights: only the scoring differs
            out = m.score(x)
            assert out.anomaly_map.shape == ref.anomaly_map.shape, kw
            assert not torch.allclose(out.anomaly_map, ref.anomaly_map), kw
            assert (out.anomaly_map >= 0).all(), kw


def test_image_score_is_the_max_of_the_smoothed_map():
    amap = torch.zeros(2, 1, 32, 32)
    amap[0, 0, 10, 10] = 1.0
    assert torch.equal(smoothed_max(amap, 0.0), torch.tensor([1.0, 0.0]))
    s = smoothed_max(amap, 2.0)
    assert 0 < s[0] < 0.1 and s[1] == 0  # a lone pixel is damped by smoothing


def test_flags_remove_their_networks_and_losses():
    x = torch.rand(4, 1, 64, 64)
    full = _utad()
    bare = _utad(image_gan=False, mutual_info=False, expert_gan=False)
    assert full.image_dis is not None and full.critics is not None and full.ie.info is not None
    assert bare.image_dis is None and bare.critics is None and bare.ie.info is None
    assert bare.dis_image is None and bare.dis_impression is None
    n_full = sum(p.numel() for p in full.parameters())
    n_bare = sum(p.numel() for p in bare.parameters())
    assert n_bare < n_full
    assert [list(s.groups) for s in full.stages()] == [["ie", "d_img", "mi"], ["gen", "dis"]]
    assert [list(s.groups) for s in bare.stages()] == [["ie"], ["gen"]]
    assert set(full.training_step(x, "impression")) == {"ie", "d_img", "mi"}
    assert set(bare.training_step(x, "impression")) == {"ie"}
    assert set(bare.training_step(x, "expert")) == {"gen"}
    # With every extra term off, stage one is the plain weighted MSE.
    plain = _utad(image_gan=False, mutual_info=False, augment="none")
    m, _ = plain.ie(x)
    torch.testing.assert_close(
        plain.training_step(x, "impression")["ie"], 100 * torch.nn.functional.mse_loss(m, x)
    )
    # The paired term (ours, off in the paper preset) adds to the generator loss.
    torch.manual_seed(3)
    base = _utad(expert_gan=False).training_step(x, "expert")["gen"]
    torch.manual_seed(3)
    paired = _utad(expert_gan=False, w_paired=10.0).training_step(x, "expert")["gen"]
    assert paired > base


def test_expert_stage_leaves_the_ie_net_alone():
    m = _utad()
    x = torch.rand(8, 1, 64, 64)
    _step(m, "impression", x)
    before = {k: v.clone() for k, v in m.ie.state_dict().items()}
    expert_before = [p.clone() for p in m.expert.parameters()]
    for _ in range(2):
        _step(m, "expert", x)
    for k, v in m.ie.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BatchNorm statistics
    assert any(
        not torch.equal(a, b) for a, b in zip(expert_before, m.expert.parameters(), strict=True)
    )


def test_resumes_after_the_first_stage(tmp_path, monkeypatch):
    images = (np.random.default_rng(0).random((8, 1, 64, 64)) * 255).astype(np.uint8)
    cfg = TrainConfig(checkpoint_dir=tmp_path, progress=False, epochs_scale=0.05)

    def interrupted(self, x, target=None):
        raise KeyboardInterrupt

    m = _utad(image_gan=False, mutual_info=False, expert_gan=False)
    monkeypatch.setattr(UTAD, "_expert_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(m, images, cfg)
    after_stage1 = {k: v.clone() for k, v in m.ie.state_dict().items()}
    monkeypatch.undo()

    calls: list[str] = []
    original = UTAD.training_step

    def counting(self, batch, stage, target=None):
        calls.append(stage)
        return original(self, batch, stage, target=target)

    monkeypatch.setattr(UTAD, "training_step", counting)
    fresh = _utad(image_gan=False, mutual_info=False, expert_gan=False)
    result = train(fresh, images, cfg)
    assert result.resumed_from == str(tmp_path)
    assert set(calls) == {"expert"}  # stage one was not run again
    stages = [h["stage"] for h in result.history]
    n_ie = stage_epochs(m.stages()[0], cfg.epochs_scale)
    assert stages == ["impression"] * n_ie + ["expert"] * (len(stages) - n_ie) and n_ie > 1
    for k, v in fresh.ie.state_dict().items():
        assert torch.equal(v, after_stage1[k]), k


def test_bad_configurations_are_clear_errors():
    with pytest.raises(ValueError, match="multiples of 32"):
        _utad(size=96 + 16)
    with pytest.raises(ValueError, match="at least 64"):
        _utad(size=32)
    with pytest.raises(ValueError, match="augment"):
        _utad(augment="sometimes")
    with pytest.raises(ValueError, match="n_samples"):
        _utad(n_samples=0)
    with pytest.raises(ValueError, match="w_gan"):
        _utad(w_gan=-1.0)
    with pytest.raises(ValueError, match="var_weight"):
        _utad(var_weight=-1.0)
    with pytest.raises(ValueError, match="ssim_range"):
        _utad(ssim_range=0.0)
    with pytest.raises(ValueError, match="ie_epochs"):
        _utad(ie_epochs=0)
    with pytest.raises(ValueError, match="filter"):
        _utad(ie_filters=(8, 16))
    with pytest.raises(ValueError, match="stages"):
        _utad().training_step(torch.rand(2, 1, 64, 64), "refine")
    with pytest.raises(ValueError, match="hyper-parameter"):
        UTAD.make_config("cpu", epochs=3)


def test_training_on_magnetic_tile_reduces_reconstruction_losses():
    from reconad.data.folders import read_mvtec

    ts = read_mvtec(shared("magnetic-tile"), "train", size=(64, 64), channels=1)
    x = torch.from_numpy(ts.images[:8]).float() / 255
    m = _utad(image_gan=False, mutual_info=False, expert_gan=False, augment="none", w_paired=10.0)
    st = m.stages()
    ie_opts = {n: torch.optim.Adam(g.parameters(), 3e-3) for n, g in st[0].groups.items()}
    ie_losses = [_step(m, "impression", x, ie_opts)["ie"] for _ in range(8)]
    assert np.mean(ie_losses[-3:]) < 0.7 * np.mean(ie_losses[:3])

    def recon_error() -> float:
        m.eval()
        with torch.no_grad():
            return float((m.reconstruct(x) - x).abs().mean())

    start = recon_error()
    ex_opts = {n: torch.optim.Adam(g.parameters(), 2e-3) for n, g in st[1].groups.items()}
    for _ in range(6):
        _step(m, "expert", x, ex_opts)
    assert recon_error() < 0.6 * start


def test_predict_grid_overlays_the_map_on_the_input(tmp_path):
    from PIL import Image

    from reconad.cli import _write_heatmap

    img = (np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    m = _utad().eval()
    with torch.no_grad():
        out = m.score(torch.rand(1, 1, 64, 64))
    ex = {
        "extras": {k: v.numpy() for k, v in out.extras.items()},
        "maps": out.anomaly_map[:, 0].numpy(),
        "scores": out.image_score.numpy(),
        "orig_sizes": [(40, 50)],
    }
    _write_heatmap(tmp_path / "maps", tmp_path / "a.png", 0, ex)
    with_overlay = Image.open(tmp_path / "maps" / "a_grid.png").size
    ex["maps"] = None
    _write_heatmap(tmp_path / "plain", tmp_path / "a.png", 0, ex)
    without = Image.open(tmp_path / "plain" / "a_grid.png").size
    assert with_overlay[0] > without[0]  # one more column: the map over the input
    assert (tmp_path / "maps" / "a_heatmap.png").exists()


def test_expert_step_given_the_frozen_target_equals_computing_the_impression():
    m = _utad()
    x = torch.rand(4, 1, 64, 64)
    _step(m, "impression", x)
    target = m._frozen_impression(x)
    torch.manual_seed(3)
    inline = m.training_step(x, "expert")
    torch.manual_seed(3)
    cached = m.training_step(x, "expert", target=target)
    assert set(inline) == set(cached) == {"gen", "dis"}
    for k in inline:
        assert torch.allclose(inline[k], cached[k], rtol=1e-5), k


def test_training_computes_the_impressions_once_per_expert_stage(monkeypatch):
    images = (np.random.default_rng(0).random((12, 1, 64, 64)) * 255).astype(np.uint8)
    calls: list[int] = []
    original = UTAD._frozen_impression

    def counting(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(UTAD, "_frozen_impression", counting)
    m = _utad(image_gan=False, mutual_info=False, expert_gan=False, ie_epochs=1, expert_epochs=3)
    train(m, images, TrainConfig(progress=False))
    assert sum(calls) == len(images)  # once per image, not once per image and epoch

"""ARNet: the paper's U-Net, the erasers, the restoration loss and the rotation score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reconad import Detector
from reconad.methods import get_method
from reconad.methods.arnet import ARNet, UNet
from reconad.metrics import image_auroc


def _arnet(channels=1, size=(32, 32), preset="cpu", **kw) -> ARNet:
    torch.manual_seed(0)
    return ARNet(ARNet.make_config(preset, **kw), channels, size)


def test_paper_preset_has_the_published_widths():
    m = _arnet(3, preset="paper")
    net = m.net
    assert net.inc[0].in_channels == 1  # graying: a 1-channel input for colour data
    assert [d[0].out_channels for d in net.downs] == [128, 256, 512, 512]
    assert [u[0].out_channels for u in net.ups] == [256, 128, 64, 64]
    assert [u[0].in_channels for u in net.ups] == [1024, 512, 256, 128]
    assert net.outc.out_channels == 3 and net.outc.kernel_size == (3, 3)
    assert all(isinstance(b[1], torch.nn.BatchNorm2d) for b in [net.inc, *net.downs, *net.ups])
    cfg = m.config
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size) == (1e-4, 1e-5, 32)


def test_cpu_preset_is_the_default_and_recorded():
    cfg = get_method("arnet").make_config()
    assert cfg.preset == "cpu" and cfg.widths == (16, 32, 64, 128, 128)
    assert get_method("arnet").make_config("paper").preset == "paper"


def test_per_sample_rotation_matches_rot90():
    m = _arnet(1)
    x = torch.rand(8, 1, 32, 32)
    k = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = m.erase(x, k)
    for i in range(8):
        torch.testing.assert_close(out[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))


def test_graying_only_for_colour_and_only_when_chosen():
    x = torch.rand(2, 3, 32, 32)
    assert _arnet(3).erase(x, 0).shape == (2, 1, 32, 32)
    # ITU-R 601 luma.
    expected = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]
    torch.testing.assert_close(_arnet(3).erase(x, 0), expected, rtol=1e-5, atol=1e-6)
    rot_only = _arnet(3, erase=("rotate",))
    assert rot_only.net.inc[0].in_channels == 3
    torch.testing.assert_close(rot_only.erase(x, 2), torch.rot90(x, 2, dims=(2, 3)))
    gray_only = _arnet(3, erase=("gray",))
    assert gray_only.rotations == (0,)
    assert _arnet(1).erase(torch.rand(2, 1, 32, 32), 0).shape == (2, 1, 32, 32)


def test_loss_targets_the_original_image():
    """A network that restores perfectly has zero loss; one that copies its input does not."""
    m = _arnet(1)

    class Copy(torch.nn.Module):
        def forward(self, x):
            return x

    m.net = Copy()
    x = torch.rand(16, 1, 32, 32)
    torch.manual_seed(1)
    assert m.training_step(x, "restore") > 0.01  # rotated copies differ from the original
    m.rotations = (0,)  # no rotation drawn: the copy restores perfectly
    assert m.training_step(x, "restore") == 0


def test_score_averages_l1_over_the_four_rotations():
    m = _arnet(1).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        out = m.score(x)
        manual = torch.stack(
            [(x - m.net(torch.rot90(x, r, dims=(2, 3)))).abs().flatten(1).mean(1) for r in range(4)]
        ).mean(0)
    torch.testing.assert_close(out.image_score, manual, rtol=1e-5, atol=1e-7)
    assert set(out.extras) == {"input", "erased", "restoration", "error"}


def test_rotation_normalisation_uses_held_out_normals():
    m = _arnet(1, normalize_rotations=True).eval()
    normals = torch.rand(20, 1, 32, 32)
    with torch.no_grad():
        m.calibrate(normals)
        maps, _, _ = m._errors(normals)
    per_rotation = maps.flatten(2).mean(2).mean(1)
    torch.testing.assert_close(m.rotation_scale, per_rotation, rtol=1e-5, atol=1e-7)
    off = _arnet(1).eval()
    off.calibrate(normals)
    assert torch.equal(off.rotation_scale, torch.ones(4))
    # The normalised score is still measured (as a component) when it is not the score.
    torch.testing.assert_close(off.rotation_mean, m.rotation_mean)


def test_components_are_each_rotations_error_and_the_normalised_score():
    m = _arnet(1).eval()
    normals, x = torch.rand(20, 1, 32, 32), torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        m.calibrate(normals)
        out = m.score(x)
        views = [
            (x - m.net(torch.rot90(x, r, dims=(2, 3)))).abs().flatten(1).mean(1) for r in range(4)
        ]
    assert set(out.components) == {"rot0", "rot90", "rot180", "rot270", "rot_normalized"}
    for r, v in enumerate(views):
        torch.testing.assert_close(out.components[f"rot{90 * r}"], v, rtol=1e-5, atol=1e-7)
    normalised = torch.stack([v / m.rotation_mean[r] for r, v in enumerate(views)]).mean(0)
    torch.testing.assert_close(out.components["rot_normalized"], normalised, rtol=1e-5, atol=1e-7)
    # With normalize_rotations the score itself is the normalised one.
    on = _arnet(1, normalize_rotations=True).eval()
    on.load_state_dict(m.state_dict())
    with torch.no_grad():
        on.calibrate(normals)
        torch.testing.assert_close(on.score(x).image_score, normalised, rtol=1e-5, atol=1e-7)


def test_bad_configurations_are_clear_errors():
    with pytest.raises(ValueError, match="square"):
        _arnet(1, size=(32, 48))
    _arnet(3, size=(32, 48), erase=("gray",))  # no rotation: any multiple of 16
    with pytest.raises(ValueError, match="erases nothing"):  # a plain autoencoder
        _arnet(1, erase=("gray",))
    with pytest.raises(ValueError, match="erases nothing"):
        _arnet(3, erase=())
    assert _arnet(3, erase="gray").config.erase == ("gray",)  # --set erase=gray
    assert _arnet(3, erase="rotate, gray").config.erase == ("rotate", "gray")
    with pytest.raises(ValueError, match="eraser"):
        _arnet(1, erase=("blur",))
    with pytest.raises(ValueError, match="hflip"):
        _arnet(1, hflip="sometimes")
    with pytest.raises(ValueError, match="5 encoder widths"):
        UNet(1, 1, (8, 16))


def test_hflip_auto_follows_colour():
    assert _arnet(3).flips and not _arnet(1).flips
    assert _arnet(1, hflip="on").flips and not _arnet(3, hflip="off").flips


def test_learns_real_digits_quickly(mnist_small):
    train, test, anomalous = mnist_small
    det = Detector("arnet", hparams={"epochs": 4, "batch_size": 32}, progress=False).fit(train)
    assert image_auroc(anomalous, det.score_samples(test)) > 0.9


def test_predict_writes_the_restoration_grid(mnist_small, tmp_path, monkeypatch):
    from PIL import Image
    from typer.testing import CliRunner

    import reconad.report
    from reconad.cli import app

    panels = []
    draw = reconad.report.save_extras_grid

    def spy(extras, path, **kw):
        panels.append({k: v.shape for k, v in extras.items()})
        return draw(extras, path, **kw)

    monkeypatch.setattr(reconad.report, "save_extras_grid", spy)

    train, test, _ = mnist_small
    Detector("arnet", hparams={"epochs": 1}, progress=False).fit(train.subset(np.arange(64))).save(
        tmp_path / "m"
    )
    img = tmp_path / "digit.png"
    Image.fromarray(test.images[0, 0]).save(img)
    r = CliRunner().invoke(
        app,
        ["predict", "--model", str(tmp_path / "m"), str(img), "--heatmaps", str(tmp_path / "hm")],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "hm" / "digit_grid.png").exists()
    assert (tmp_path / "hm" / "digit_heatmap.png").exists()
    # the grid's panels: input, erased input, restoration, error map (one image, 32x32)
    assert panels == [
        {"input": (1, 1, 32, 32), "erased": (1, 1, 32, 32), "restoration": (1, 1, 32, 32),
         "error": (1, 1, 32, 32)}
    ]  # fmt: skip

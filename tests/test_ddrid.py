"""DDR-ID: its reconstructed design (two branches, three losses, c, standardised scores),
its labelling, and that it separates real MNIST digits."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from reconad.detector import Detector
from reconad.methods import get_method
from reconad.methods.ddrid import DDRID, LATENT_CONSTRAINTS, register_latent_constraint
from reconad.metrics import image_auroc
from reconad.protocols import OneClassSettings, one_class, one_class_summary


def _model(channels: int = 1, size: int = 28, **hp) -> DDRID:
    torch.manual_seed(0)
    return DDRID(DDRID.make_config(**{"gcn": False, **hp}), channels, (size, size))


def test_is_labelled_as_reconstructed_from_the_abstract():
    cls = get_method("ddrid")
    label = "reconstructed from the published abstract"
    assert label in cls.provenance and label in cls.summary
    assert label in sys.modules[cls.__module__].__doc__.lower() and label in cls.__doc__
    assert cls.make_config().preset == "cpu" and cls.make_config("paper").lr == 1e-4


def test_deep_svdd_backbones_and_stages():
    m = _model()
    assert not any(p.ndim == 1 for p in m.parameters())  # no biases, no affine BatchNorm
    assert m.enc_n.fc.out_features == 32 and _model(3, 32).enc_n.fc.out_features == 128
    stages = m.stages()
    assert [s.name for s in stages] == ["pretrain", "joint"]
    pre = {id(p) for p in stages[0].groups["normal"].parameters()}
    assert pre == {id(p) for p in [*m.enc_n.parameters(), *m.dec_n.parameters()]}
    assert len(stages[1].groups["all"].parameters()) == len(list(m.parameters()))
    assert [s.name for s in _model(pretrain_epochs=0).stages()] == ["joint"]


def test_residual_branch_starts_at_zero_so_joint_training_starts_from_the_autoencoder():
    m = _model().eval()
    x = torch.rand(4, 1, 28, 28)
    d = m.decompose(x)
    assert torch.equal(d["x_r"], torch.zeros_like(x))
    assert d["x_n"].min() >= 0 and d["x_n"].max() <= 1 and d["z_n"].shape == (4, 32)


def test_centre_is_the_mean_code_with_deep_svdd_eps_rule():
    m = _model()
    x = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mean = m.eval().enc_n(x).mean(0)
    eps = float(mean.abs().median())  # half the entries fall under eps
    m.config.eps = eps
    m.train().on_stage_start("pretrain", [x])
    assert torch.equal(m.c, torch.zeros(32))  # only the joint stage fixes c
    m.on_stage_start("joint", [x[:25], x[25:]])
    assert m.training  # the hook restores the mode it found
    small = mean.abs() < eps
    assert small.any() and (~small).any()
    torch.testing.assert_close(m.c[~small], mean[~small], rtol=1e-5, atol=1e-6)
    assert torch.equal(m.c[small].abs(), torch.full((int(small.sum()),), eps))
    assert torch.equal(m.c[small].sign(), torch.where(mean[small] < 0, -1.0, 1.0))


def test_joint_loss_is_the_sum_of_the_three_losses():
    m = _model(lambda_oc=0.0, lambda_lat=0.0)
    x = torch.rand(8, 1, 28, 28)
    m.c.fill_(0.5)
    torch.manual_seed(3)
    base = m.training_step(x, "joint")
    m.config.lambda_oc = 1.0
    torch.manual_seed(3)
    with_oc = m.training_step(x, "joint")
    with torch.no_grad():
        l_oc = (m.enc_n(x) - 0.5).pow(2).sum(1).mean()
    torch.testing.assert_close(with_oc - base, l_oc, rtol=1e-4, atol=1e-4)

    # The whole loss, written from METHODS.md: ||x - (x_n + x_r)||^2 + w ||x - x_n||^2
    # + lambda_oc ||z_n - c||^2 + lambda_lat (||z_r||^2 + decorr_weight * decorrelation).
    m = _model(lambda_oc=0.3, lambda_lat=2.0, normal_rec_weight=0.5, latent_constraint="l2")
    with torch.no_grad():
        for prm in m.dec_r.parameters():  # x_r starts at zero: make it matter
            prm.normal_(0, 0.05, generator=torch.Generator().manual_seed(5))
    m.c.fill_(0.2)
    m.train()
    with torch.no_grad():
        d = m.decompose(x)
    sse = lambda a: a.pow(2).flatten(1).sum(1).mean()  # noqa: E731
    want = (
        sse(x - d["x_n"] - d["x_r"])
        + 0.5 * sse(x - d["x_n"])
        + 0.3 * (d["z_n"] - 0.2).pow(2).sum(1).mean()
        + 2.0 * d["z_r"].pow(2).sum(1).mean()
    )
    assert float(d["x_r"].abs().max()) > 1e-3
    torch.testing.assert_close(m.training_step(x, "joint"), want, rtol=1e-4, atol=1e-4)

    # the score's extras keep x_r's sign (a grid draws it on a diverging scale)
    m.eval()
    with torch.no_grad():
        m.calibrate(x)
        x_r = m.score(x).extras["x_r"]
    assert bool((x_r < 0).any()) and bool((x_r > 0).any())


def test_latent_constraint_is_pluggable():
    calls = []

    def custom(z_n, z_r, cfg):
        calls.append(z_r.shape)
        return z_r.abs().sum(1).mean()

    register_latent_constraint("l1_test", custom)
    try:
        m = _model(latent_constraint="l1_test")
        m.training_step(torch.rand(6, 1, 28, 28), "joint")
        assert calls == [(6, 32)]
    finally:
        LATENT_CONSTRAINTS.pop("l1_test")
    with pytest.raises(ValueError, match="latent_constraint"):
        _model(latent_constraint="nope")
    with pytest.raises(ValueError, match="score must be"):
        _model(score="best")
    with pytest.raises(ValueError, match="sides >= 8"):
        DDRID(DDRID.make_config(), 3, (6, 6))


def test_calibration_standardises_both_scores_and_fuses_them():
    m = _model().eval()
    normals = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        m.calibrate(normals)
        parts = m.score_components(normals)
        out = m.score(normals[:5])
    for k in ("latent", "image"):
        assert abs(float(parts[k].mean())) < 1e-4 and abs(float(parts[k].std()) - 1) < 1e-4
    torch.testing.assert_close(out.image_score, parts["latent"][:5] + parts["image"][:5])
    assert set(out.extras) == {"input", "x_n", "x_r", "residual"}
    torch.testing.assert_close(m.reconstruct(normals[:5]), out.extras["x_n"])
    assert m.features(normals[:5]).shape == (5, 32)
    m.config.score = "latent"
    torch.testing.assert_close(m.score(normals[:5]).image_score, parts["latent"][:5])


def test_separates_real_mnist_digits(mnist_small, tmp_path, monkeypatch):
    """Trained on 460 real ones (cpu preset, a few epochs): ones vs other digits; saved, its
    model card carries the label, and `reconad predict` draws the decomposition grid."""
    train, test, anomalous = mnist_small
    det = Detector("ddrid", progress=False, hparams={"pretrain_epochs": 8, "epochs": 8}).fit(train)
    fused = image_auroc(anomalous, det.score_samples(test))
    parts = det.explain(test, n=0, maps=False)["components"]  # the benchmark's path
    lat, img = (image_auroc(anomalous, parts[k]) for k in ("latent", "image"))
    assert fused > 0.9 and lat > 0.8 and img > 0.8, (fused, lat, img)
    assert np.isfinite(det.threshold_)
    ex = det.explain(test, n=2)
    assert ex["extras"]["x_n"].shape == (2, 1, 28, 28)

    label = "reconstructed from the published abstract"
    det.save(tmp_path / "m")
    assert label in json.loads((tmp_path / "m" / "config.json").read_text())["provenance"]
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert label in card and "threshold" in card and "ddrid" in card
    import reconad.report
    from reconad.cli import app

    panels, draw = [], reconad.report.save_extras_grid
    spy = lambda extras, path, **kw: panels.append(list(extras)) or draw(extras, path, **kw)  # noqa: E731
    monkeypatch.setattr(reconad.report, "save_extras_grid", spy)
    img = tmp_path / "digit.png"
    Image.fromarray(test.images[0, 0]).save(img)
    r = CliRunner().invoke(
        app,
        ["predict", "--model", str(tmp_path / "m"), str(img), "--heatmaps", str(tmp_path / "hm")],
    )  # noqa: E501
    assert r.exit_code == 0, r.output
    assert panels == [["input", "x_n", "x_r", "residual"]]
    assert (tmp_path / "hm" / "digit_grid.png").stat().st_size > 0
    for cmd in (["fit", "--help"], ["benchmark", "one-class", "--help"], ["list"]):
        out = CliRunner().invoke(app, cmd, env={"COLUMNS": "250"}).output  # no wrapping
        assert label in " ".join(out.replace("│", " ").split()), cmd


def test_benchmark_records_components_and_prints_reference_methods(mnist_test):
    idx = np.arange(3000)
    train, test = mnist_test.subset(idx[:2000]), mnist_test.subset(np.arange(3000, 3600))
    settings = OneClassSettings(
        dataset="mnist", method="ddrid", progress=False,
        hparams={"pretrain_epochs": 2, "epochs": 2},
    )  # fmt: skip
    rec = one_class.run_one_class("mnist", train, test, 0, settings, 0)
    assert set(rec["components"]) == {"latent", "image"}
    assert all(0 <= v <= 100 for v in rec["components"].values())
    summary = one_class_summary.summarize([rec], references=DDRID.reference_methods)
    assert summary["component_means"].keys() == {"latent", "image"}
    # One class run: each reference's mean is over that class, not the paper's ten.
    assert summary["reference_means"] == {"deepsvdd": 98.0, "arnet": 98.6}
    assert summary["rows"][0]["references"]["deepsvdd"] == 98.0
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(one_class_summary.render_table(summary))
    text = console.export_text()
    assert "latent %" in text and "deepsvdd (pub.)" in text and "98.0" in text


def test_gcn_option_scales_training_data_to_0_1_and_reconstructs_in_image_space():
    m = _model(gcn=True)
    x = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    m.on_stage_start("pretrain", [x[:15], x[15:]])  # the first stage fits the range
    p = m.prep(x)
    assert float(p.min()) == pytest.approx(0, abs=1e-6) and float(p.max()) == pytest.approx(1)
    with torch.no_grad():
        rec = m.eval().reconstruct(x)
        assert rec.shape == x.shape and 0 <= float(rec.min()) and float(rec.max()) <= 1
        assert not torch.allclose(rec, m.dec_n(m.enc_n(p)))

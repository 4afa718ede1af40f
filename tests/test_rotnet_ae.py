"""rotnet_ae: RotNet pre-training, the frozen encoder, refinement and the multi-view score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reconad import Detector
from reconad.inputs import resize_uint8
from reconad.methods.rotnet_ae import RotNetAE

TINY = {"widths": (8, 16, 32), "refine_widths": (8, 8, 8), "refine_code": 4, "lr": 3e-3}


def _model(channels=1, size=32, **kw) -> RotNetAE:
    torch.manual_seed(0)
    return RotNetAE(RotNetAE.make_config("cpu", **{**TINY, **kw}), channels, (size, size))


def _digits(mnist_test, digit: int, start: int, n: int) -> torch.Tensor:
    idx = np.flatnonzero(mnist_test.labels == digit)[start : start + n]
    return torch.from_numpy(resize_uint8(mnist_test.images[idx], (32, 32))).float() / 255


def _steps(m: RotNetAE, x: torch.Tensor, stage: str, epochs: int, bs: int = 50) -> None:
    """What the training loop does for one stage: train mode, the stage's own optimiser."""
    (st,) = [s for s in m.stages() if s.name == stage]
    opt = torch.optim.Adam(st.groups["model"].parameters(), lr=st.groups["model"].lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        m.train()
        for idx in torch.randperm(len(x), generator=gen).split(bs):
            loss = m.training_step(x[idx], stage)
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()


def test_rotnet_stage_learns_rotations_of_real_digits(mnist_test):
    m = _model()
    train, held_out = _digits(mnist_test, 7, 0, 300), _digits(mnist_test, 7, 300, 100)
    with torch.no_grad():
        logits, labels = m.rotation_logits(held_out)
    before = (logits.argmax(1) == labels).float().mean().item()
    _steps(m, train, "rotnet", epochs=4)
    with torch.no_grad():
        logits, labels = m.rotation_logits(held_out)
    acc = (logits.argmax(1) == labels).float().mean().item()
    assert acc > 0.7 and acc > before + 0.3, (before, acc)  # chance is 0.25
    # the score, one rotation at a time, is the four copies' mean cross-entropy per image
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        per_image = m.rotation_score(held_out)
    torch.testing.assert_close(per_image, ce.view(4, -1).mean(0), rtol=1e-5, atol=1e-6)
    assert per_image.shape == (100,)


def test_encoder_is_frozen_while_the_decoder_and_refinement_train(mnist_test):
    m = _model()
    x = _digits(mnist_test, 3, 0, 100)
    enc = {k: v.clone() for k, v in m.encoder.state_dict().items()}  # weights + BN statistics
    dec = {k: v.clone() for k, v in m.decoder.state_dict().items()}
    stages = {s.name: s for s in m.stages()}
    assert list(stages) == ["rotnet", "decoder", "refine"]
    enc_ids = {id(p) for p in m.encoder.parameters()}
    for name in ("decoder", "refine"):
        assert not enc_ids & {id(p) for p in stages[name].groups["model"].parameters()}
    _steps(m, x, "decoder", epochs=1)
    for k, v in m.encoder.state_dict().items():
        torch.testing.assert_close(v, enc[k], rtol=0, atol=0, msg=f"encoder {k} changed")
    assert any(not torch.equal(v, dec[k]) for k, v in m.decoder.state_dict().items())
    dec = {k: v.clone() for k, v in m.decoder.state_dict().items()}
    _steps(m, x, "refine", epochs=1)
    for k, v in m.decoder.state_dict().items():
        torch.testing.assert_close(v, dec[k], rtol=0, atol=0, msg=f"decoder {k} changed")
    for k, v in m.encoder.state_dict().items():
        torch.testing.assert_close(v, enc[k], rtol=0, atol=0, msg=f"encoder {k} changed")


@pytest.mark.parametrize("bottleneck", ["memory", "noise", "kl"])
def test_every_bottleneck_trains_and_scores_deterministically(bottleneck):
    m = _model(bottleneck=bottleneck)
    x = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    m.train()
    loss = m.training_step(x, "refine")
    assert loss.ndim == 0 and torch.isfinite(loss)
    with torch.no_grad():  # the refinement starts as the identity: make its code matter
        m.r_decoder[-1].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    m.eval()
    with torch.no_grad():
        a, b = m.reconstruct(x), m.reconstruct(x)
        coarse = m.coarse(x)
    assert (a - coarse).abs().max() > 1e-3  # the bottleneck's code reaches the output
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # no noise or sampling at test time


def test_memory_addressing_is_sparse_and_sums_to_one():
    m = _model(bottleneck="memory")
    with torch.no_grad():
        m.bottleneck.memory.normal_()  # spread-out items: a peaked softmax, as after training
    z = m.bottleneck.memory[:8].detach() + 0.1 * torch.randn(8, m.bottleneck.memory.shape[1])
    w = m.bottleneck.address(z)
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(8))
    assert ((w > 0).sum(1) < m.config.memory_size).all()  # hard shrinkage zeroes weak items
    assert (w.argmax(1) == torch.arange(8)).all()  # each code finds its own prototype
    out, aux = m.bottleneck.eval()(z)
    torch.testing.assert_close(out, w @ m.bottleneck.memory)  # a mix of memory items
    # the auxiliary loss is the addressing entropy (MemAE), weighted
    ent = -(w * torch.log(w.clamp_min(1e-12))).sum(1).mean().detach()
    assert float(aux.detach()) == pytest.approx(m.config.entropy_weight * float(ent), rel=1e-4)


def test_without_refinement_the_output_is_the_coarse_reconstruction():
    m = _model(refine=False).eval()
    assert [s.name for s in m.stages()] == ["rotnet", "decoder"]
    assert not hasattr(m, "r_encoder")
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.reconstruct(x), m.coarse(x))


def test_calibration_standardises_the_views_on_normals():
    m = _model(views=("mse", "ssim", "feature", "rotation")).eval()
    gen = torch.Generator().manual_seed(0)
    normals = torch.rand(40, 1, 32, 32, generator=gen) * 0.5
    with torch.no_grad():
        m.calibrate(normals)
        s = m.score(normals)
        comps = m.score_components(normals)
    assert s.image_score.mean().abs() < 1e-5  # each standardised view has mean 0
    assert s.anomaly_map.shape == (40, 1, 32, 32)
    assert set(comps) == {"coarse", "rotation"} and comps["coarse"].mean().abs() < 1e-5
    assert {"coarse", "refined"} <= set(s.extras)


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="bottleneck"):
        _model(bottleneck="vq")
    with pytest.raises(ValueError, match="views"):
        _model(views=("mse", "psnr"))
    with pytest.raises(ValueError, match="multiples of 8"):
        RotNetAE(RotNetAE.make_config(), 1, (36, 36))
    with pytest.raises(ValueError, match="stage"):
        _model().training_step(torch.rand(2, 1, 32, 32), "finetune")


def test_detector_trains_all_three_stages(mnist_small):
    train, test, anomalous = mnist_small
    hp = {**TINY, "rot_epochs": 1, "dec_epochs": 1, "refine_epochs": 1, "batch_size": 64}
    det = Detector("rotnet_ae", progress=False, hparams=hp).fit(train.subset(np.arange(256)))
    assert [h["stage"] for h in det.history_] == ["rotnet", "decoder", "refine"]
    s = det.score_samples(test.subset(np.arange(0, 400, 20)))
    assert s.shape == (20,) and np.isfinite(s).all()


def test_coarse_component_is_the_model_without_refinement(mnist_small):
    """With one seed, refine=False trains the very same encoder and decoder, so the ablation
    'without refinement' can be read off a refined run's ``coarse`` component."""
    train, test, _ = mnist_small
    hp = {**TINY, "rot_epochs": 1, "dec_epochs": 1, "refine_epochs": 1, "batch_size": 64}
    data, probe = train.subset(np.arange(192)), test.subset(np.arange(0, 400, 40))
    with_r = Detector("rotnet_ae", progress=False, hparams=hp).fit(data)
    without = Detector("rotnet_ae", progress=False, hparams={**hp, "refine": False}).fit(data)
    x = torch.from_numpy(resize_uint8(probe.images, (32, 32))).float() / 255
    with torch.no_grad():
        coarse = with_r.method_.eval().score_components(x)["coarse"]
    np.testing.assert_allclose(coarse.numpy(), without.score_samples(probe), rtol=1e-5, atol=1e-5)

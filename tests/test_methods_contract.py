"""The contract every registered method must meet (timm-style: one test, every method).

A method registered tomorrow is covered here the moment it is registered: it builds from
its default config and every preset, trains one step (or fits in closed form), scores with
the right shapes, survives a safetensors round trip bit for bit, and scores in eval mode
deterministically, and exports to ONNX with the detector's numbers (or refuses, saying why).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from reconad.calibration import threshold_at_fpr
from reconad.conformal import p_values
from reconad.detector import Detector
from reconad.export import NOISE_FACTOR, TOLERANCE, ExportedModel, ExportError, export_onnx
from reconad.inputs import round_up
from reconad.methods import Method, ScoreOutput, get_method, list_methods
from tests.conftest import digit_zeros

METHODS = list_methods()


def _size(cls: type[Method]) -> tuple[int, int]:
    side = round_up(28, cls.size_multiple, cls.min_size)
    return side, side


def _built(name: str, channels: int, seed: int = 0) -> tuple[Method, torch.Tensor]:
    cls = get_method(name)
    torch.manual_seed(seed)
    m = cls(cls.make_config(), channels, _size(cls))
    x = torch.rand(24, channels, *_size(cls), generator=torch.Generator().manual_seed(seed))
    return m, x


def _fit_tiny(m: Method, x: torch.Tensor) -> None:
    """One optimiser step per stage (or the closed-form fit): enough to exercise training."""
    m.fit_closed_form(x)
    for stage in m.stages():
        m.on_stage_start(stage.name, [x])
        m.train()
        out = m.training_step(x, stage.name)
        losses = out if isinstance(out, dict) else {next(iter(stage.groups)): out}
        for name, loss in losses.items():
            assert loss.ndim == 0 and torch.isfinite(loss), (stage.name, name, loss)
            params = stage.groups[name].parameters()
            assert params, f"stage {stage.name!r} group {name!r} trains no parameters"
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
    m.eval()
    m.calibrate(x[:8])


def test_registry_is_populated():
    assert {"ae", "ssim_ae"} <= set(METHODS)
    with pytest.raises(KeyError, match="registered"):
        get_method("no-such-method")


@pytest.mark.parametrize("name", METHODS)
def test_declares_its_contract(name):
    cls = get_method(name)
    assert cls.name == name and cls.summary and cls.provenance
    assert dataclasses.is_dataclass(cls.Config)
    for preset in cls.presets:
        cls.make_config(preset)
    with pytest.raises(ValueError, match="preset"):
        cls.make_config("no-such-preset")
    with pytest.raises(ValueError, match="hyper-parameter"):
        cls.make_config(no_such_field=1)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", METHODS)
def test_trains_and_scores_with_the_right_shapes(name, channels):
    m, x = _built(name, channels)
    _fit_tiny(m, x)
    with torch.no_grad():
        out = m.score(x[:5])
    assert isinstance(out, ScoreOutput)
    assert out.image_score.shape == (5,)
    assert torch.isfinite(out.image_score).all()
    if m.produces_maps:
        assert out.anomaly_map is not None
        assert out.anomaly_map.shape == (5, 1, *_size(type(m)))
        assert torch.isfinite(out.anomaly_map).all()
    else:
        assert out.anomaly_map is None
    for key, value in out.extras.items():
        assert value.shape[0] == 5 and value.ndim == 4, key
    # the flag the detector trusts to skip a scoring pass must match what score returns
    assert bool(out.components) == m.has_components
    for key, value in out.components.items():
        assert value.shape == (5,) and torch.isfinite(value).all(), key


@pytest.mark.parametrize("name", METHODS)
def test_safetensors_round_trip_gives_identical_scores(name, tmp_path):
    m, x = _built(name, 1)
    _fit_tiny(m, x)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, tmp_path / "w.safetensors")
    fresh, _ = _built(name, 1, seed=123)  # other initial weights
    fresh.assign_state(load_file(tmp_path / "w.safetensors"))
    fresh.eval()
    with torch.no_grad():
        a, b = m.score(x).image_score, fresh.score(x).image_score
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("name", METHODS)
def test_scoring_is_deterministic_and_per_image(name):
    """Scores in eval mode do not depend on the batch an image is scored in."""
    m, x = _built(name, 1)
    _fit_tiny(m, x)
    with torch.no_grad():
        whole = m.score(x[:6]).image_score
        parts = torch.cat([m.score(x[:3]).image_score, m.score(x[3:6]).image_score])
    np.testing.assert_allclose(whole.numpy(), parts.numpy(), rtol=1e-4, atol=1e-6)


def test_assign_state_rejects_unknown_and_missing_keys():
    m, _ = _built("ae", 1)
    state = dict(m.state_dict())
    with pytest.raises(KeyError, match="lacks"):
        m.assign_state({**state, "bogus.weight": torch.zeros(1)})
    state.pop(next(iter(state)))
    with pytest.raises(KeyError, match="lacks parameters"):
        m.assign_state(state)


def _train_steps(m: Method, x: torch.Tensor, steps: int = 3, lr: float = 3e-3) -> None:
    """A few real Adam steps per stage (or the closed-form fit): enough to leave the initial
    state, whose near-constant outputs (UTAD's impression) amplify float32 noise."""
    m.fit_closed_form(x)
    for stage in m.stages():
        m.on_stage_start(stage.name, [x])
        opts = {g: torch.optim.Adam(grp.parameters(), lr=lr) for g, grp in stage.groups.items()}
        for _ in range(steps):
            m.train()
            out = m.training_step(x, stage.name)
            losses = out if isinstance(out, dict) else {next(iter(stage.groups)): out}
            grads = {
                g: torch.autograd.grad(
                    loss, stage.groups[g].parameters(), retain_graph=True, allow_unused=True
                )
                for g, loss in losses.items()
            }
            for g, gs in grads.items():
                for p, grad in zip(stage.groups[g].parameters(), gs, strict=True):
                    p.grad = grad
                opts[g].step()
    m.eval()


def _digits(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Real images every machine has (scikit-learn's digits) at ``side`` x ``side``: 16
    zeros to train and calibrate on, and a test batch of 4 other zeros and 4 other digits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    others = torch.from_numpy(d.images[d.target != 0][:4]).float()[:, None] / 16.0
    others = torch.nn.functional.interpolate(others, size=(side, side), mode="bilinear")
    others = (others.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    zeros = digit_zeros(side)
    return zeros[:16], np.concatenate([zeros[16:20], others])


def _trained_detector(name: str) -> tuple[Detector, np.ndarray]:
    """A fitted Detector around a briefly trained method (8 images), calibrated on 8
    held-out zeros, as ``Detector.fit`` leaves it; and 8 test images."""
    cls = get_method(name)
    train, test = _digits(_size(cls)[0])
    torch.manual_seed(0)
    m = cls(cls.make_config(), 1, _size(cls))
    _train_steps(m, torch.from_numpy(train[:8]).float() / 255)
    held_out = train[8:]
    m.calibrate(torch.from_numpy(held_out).float() / 255)
    det = Detector(name, progress=False)
    det.method_, det.input_shape_ = m, (1, *_size(cls))
    det.normalize, det.patch_, det.scoring_, det.image_score_ = "none", None, None, "native"
    det.val_scores_ = det.score_samples(held_out).astype(np.float64)
    det.threshold_ = threshold_at_fpr(det.val_scores_)
    return det, test


def check_parity(det: Detector, got: dict[str, np.ndarray], test: np.ndarray) -> np.ndarray:
    """Assert that an exported model's outputs ``got`` on ``test`` are the detector's
    (``score_samples``, ``anomaly_maps``) to 1e-4, or, where the detector's own float32
    result moves more than that when each image is scored alone, to NOISE_FACTOR times
    that movement. Returns the detector's scores."""
    scores = det.score_samples(test)
    outputs = {"score": (got["score"], scores, "scores")}
    if det.method_.produces_maps:
        outputs["map"] = (got["map"], det.anomaly_maps(test), "maps")
    else:
        assert set(got) == {"score"}
    alone = None
    for key, (onnx_out, native, field) in outputs.items():
        assert onnx_out.shape == native.shape, key
        diff = float(np.max(np.abs(onnx_out - native)))
        if diff <= TOLERANCE:
            continue
        if alone is None:  # only then: scoring image by image is slow for some methods
            alone = [det.explain(test[i : i + 1], n=0) for i in range(len(test))]
        noise = float(np.max(np.abs(np.concatenate([a[field] for a in alone]) - native)))
        # the noise allowance stays small beside the output's own size (no silent pass)
        assert noise <= 1e-3 * max(1.0, float(np.max(np.abs(native)))), (key, noise)
        assert diff <= NOISE_FACTOR * noise, (key, diff, noise)
    return scores


@pytest.mark.parametrize("name", METHODS)
def test_exports_to_onnx_with_the_detectors_numbers(name, tmp_path):
    """onnxruntime on the exported file gives the detector's scores and maps on real images,
    to 1e-4, or to a few times the detector's own float32 batch noise where that is larger
    (SSIM maps of a barely trained network); a method that cannot export must say why."""
    det, test = _trained_detector(name)
    out = tmp_path / "model.onnx"
    reason = get_method(name).export_refusal
    if reason:
        with pytest.raises(ExportError, match=re.escape(reason)):
            export_onnx(det, out)
        assert not out.exists()
        return
    export_onnx(det, out, check_images=test[:3])
    exported = ExportedModel(out)
    got = exported.run(test)
    scores = check_parity(det, got, test)
    info = exported.info
    assert info["method"] == name and info["provenance"] == get_method(name).provenance
    assert info["input"]["dtype"] == "uint8"
    assert info["input"]["shape"] == ["batch", 1, *_size(type(det.method_))]
    assert info["calibration"]["threshold"] == det.threshold_
    np.testing.assert_array_equal(
        p_values(info["calibration"]["scores"], scores), det.p_values_of(scores)
    )

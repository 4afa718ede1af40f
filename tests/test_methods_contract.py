"""The contract every registered method must meet (timm-style: one test, every method).

A method registered tomorrow is covered here the moment it is registered: it builds from
its default config and every preset, trains one step (or fits in closed form), scores with
the right shapes, survives a safetensors round trip bit for bit, and scores in eval mode
deterministically.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from reconad.inputs import round_up
from reconad.methods import Method, ScoreOutput, get_method, list_methods

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

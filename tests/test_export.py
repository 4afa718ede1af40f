"""ONNX export: every post-hoc scoring option in the graph, refusals, output safety, CLI.

Every registered method's export is checked in tests/test_methods_contract.py; here the
options a detector adds on top of a method (multi-view, difficulty, image scores read off
the map, per-image intensity normalisation, RGB input) are checked on fitted detectors, with
scikit-learn's digits (real images every machine has).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reconad import Detector
from reconad.cli import app
from reconad.conformal import p_values
from reconad.export import (
    TOLERANCE,
    ExportedModel,
    ExportError,
    export_onnx,
    is_our_onnx,
    sidecar_path,
)
from reconad.methods.ae import AutoEncoder
from reconad.serialize import OutputRefused
from tests.conftest import digit_zeros
from tests.test_methods_contract import check_parity

pytestmark = pytest.mark.filterwarnings("ignore:.*(undertrained|held-out normal):UserWarning")
runner = CliRunner()


def _others(side: int, n: int = 12) -> np.ndarray:
    """Digits other than zero, uint8 ``(n, 1, side, side)``: anomalies to the zeros."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images[d.target != 0][:n]).float()[:, None] / 16.0
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _rgb(gray: np.ndarray) -> np.ndarray:
    """A colour version of gray digits: each channel scaled differently, plus an offset."""
    x = gray.astype(np.float32)
    return np.concatenate([x, 0.6 * x + 40, 255 - 0.8 * x], 1).round().astype(np.uint8)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """(train, test): 140 zeros at 16 x 16; 8 other zeros and 12 other digits."""
    zeros = digit_zeros(16)
    return zeros[:140], np.concatenate([zeros[140:148], _others(16)])


@pytest.fixture(scope="module")
def pca(digits) -> Detector:
    return Detector("pca", progress=False).fit(digits[0])


def _parity(det: Detector, test: np.ndarray, tmp_path) -> dict:
    """Export, run the file with onnxruntime, and check it against the detector (to 1e-4,
    or a few times the detector's own batch noise: see ``check_parity``)."""
    out = tmp_path / "m.onnx"
    export_onnx(det, out)
    exported = ExportedModel(out)
    check_parity(det, exported.run(test), test)
    return exported.info


OPTIONS = [
    {"score_views": "multiview", "difficulty": "entropy"},  # pca: no encoder, the frozen network
    {"score_views": "multiview", "difficulty": "gradient", "difficulty_mode": "subtract"},
    {"difficulty": "entropy"},  # the native score divided by the difficulty
    {"image_score": "map_max"},
    {"image_score": "map_topk", "normalize": "image"},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "+".join(o.values()))
def test_every_scoring_option_is_in_the_graph(options, digits, tmp_path):
    train, test = digits
    det = Detector("pca", progress=False, **options).fit(train)
    info = _parity(det, test, tmp_path)
    assert info["scoring"]["image_score"] == options.get("image_score", "native")
    assert info["scoring"]["difficulty"] == options.get("difficulty", "none")
    assert info["input"]["normalize"] == options.get("normalize", "none")


def test_an_autoencoder_with_its_own_features_and_rgb_images(digits, tmp_path):
    train, test = digits
    det = Detector(
        "ae",
        hparams={"epochs": 1, "batch_size": 16, "latent_dim": 8},
        score_views="multiview",
        difficulty="gradient",
        normalize="image",
        progress=False,
    ).fit(_rgb(train[:64]))
    info = _parity(det, _rgb(test), tmp_path)
    assert info["input"]["shape"] == ["batch", 3, 16, 16]
    assert info["input"]["color"] == "RGB"


def test_model_json_holds_the_decision_and_provenance(pca, digits, tmp_path):
    test = digits[1]
    out = tmp_path / "model.onnx"
    export_onnx(pca, out)
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["format"] == "reconad-onnx/1" and info["onnx"] == "model.onnx"
    assert info["method"] == "pca" and info["provenance"] == pca.provenance_
    assert info["input"] | {"dtype": "uint8", "range": [0, 255], "layout": "NCHW"} == info["input"]
    cal = info["calibration"]
    assert cal["threshold"] == pca.threshold_ and cal["target_fpr"] == pca.target_fpr
    scores = ExportedModel(out).run(test)["score"]
    np.testing.assert_allclose(p_values(cal["scores"], scores), pca.p_values(test), atol=0)
    assert set(info["parity"]) == {"images", "score", "map"}
    assert "torch" in info["versions"] and "onnxruntime" in info["versions"]


def test_a_model_without_held_out_scores_says_so_in_valid_json(digits, tmp_path):
    det = Detector("pca", val_fraction=0, progress=False).fit(digits[0])
    export_onnx(det, tmp_path / "m.onnx")
    cal = json.loads((tmp_path / "m.json").read_text(), parse_constant=pytest.fail)["calibration"]
    assert cal["threshold"] is None and cal["scores"] == []


def test_a_method_without_maps_exports_its_score_only(digits, tmp_path):
    train, test = digits
    det = Detector("ocsvm", progress=False).fit(train)
    export_onnx(det, tmp_path / "m.onnx")
    got = ExportedModel(tmp_path / "m.onnx").run(test)
    assert set(got) == {"score"}
    assert np.max(np.abs(got["score"] - det.score_samples(test))) <= TOLERANCE


def test_the_batch_size_is_free(pca, digits, tmp_path):
    export_onnx(pca, tmp_path / "m.onnx")
    model = ExportedModel(tmp_path / "m.onnx")
    test = digits[1]
    one = np.concatenate([model.run(test[i : i + 1])["score"] for i in range(5)])
    np.testing.assert_allclose(one, model.run(test[:5])["score"], rtol=1e-6)


def test_what_cannot_be_traced_is_refused_with_the_reason(digits, tmp_path, monkeypatch):
    train = digits[0]
    out = tmp_path / "m.onnx"
    tiled = Detector("pca", image_size=16, patch=8, progress=False).fit(train)
    with pytest.raises(ExportError, match="tiles"):
        export_onnx(tiled, out)
    bpp = Detector("pca", difficulty="bpp", progress=False).fit(train)
    with pytest.raises(ExportError, match="PNG"):
        export_onnx(bpp, out)
    ae = Detector(
        "ae", hparams={"epochs": 1, "batch_size": 16, "latent_dim": 8}, progress=False
    ).fit(train[:32])
    monkeypatch.setattr(AutoEncoder, "export_refusal", "it says so")
    with pytest.raises(ExportError, match="method 'ae' cannot be exported to ONNX: it says so"):
        export_onnx(ae, out)
    assert not out.exists() and not sidecar_path(out).exists()


def test_never_replaces_a_file_reconad_did_not_write(pca, tmp_path):
    out = tmp_path / "model.onnx"
    for victim in (out, tmp_path / "model.json"):
        victim.write_text("my notes")
        with pytest.raises(OutputRefused, match="not a file reconad export wrote"):
            export_onnx(pca, out)
        assert victim.read_text() == "my notes"
        victim.unlink()
    export_onnx(pca, out)
    assert is_our_onnx(out)
    export_onnx(pca, out)  # its own files: replaced
    assert not list(tmp_path.glob(".*.tmp"))


# ---- command line ----------------------------------------------------------------------
def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_error_line(r, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for needle in needles:
        assert needle in lines[0], r.output


def test_cli_exports_and_checks(pca, digits, tmp_path):
    pca.save(tmp_path / "model")
    out = tmp_path / "deploy" / "pca.onnx"
    r = _invoke("export", "--model", tmp_path / "model", "--format", "onnx", "--out", out)
    assert r.exit_code == 0, r.output
    assert "pca.json" in r.output and "(N, 1, 16, 16)" in r.output
    test = digits[1]
    got = ExportedModel(out).run(test)
    assert np.max(np.abs(got["score"] - pca.score_samples(test))) <= TOLERANCE
    assert "Needs" in _invoke("export", "--help").output


def test_cli_bad_inputs_each_get_one_line(pca, tmp_path, monkeypatch):
    pca.save(tmp_path / "model")
    out = tmp_path / "m.onnx"
    _one_error_line(_invoke("export", "--model", tmp_path / "nope", "--out", out), "not found")
    r = _invoke("export", "--model", tmp_path / "model", "--format", "tflite", "--out", out)
    _one_error_line(r, "tflite", "onnx")
    r = _invoke("export", "--model", tmp_path / "model", "--out", tmp_path / "m.json")
    _one_error_line(r, ".onnx file")
    out.write_bytes(b"someone's file")
    _one_error_line(
        _invoke("export", "--model", tmp_path / "model", "--out", out), "refusing to replace"
    )
    assert out.read_bytes() == b"someone's file"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    r = _invoke("export", "--model", tmp_path / "model", "--out", tmp_path / "n.onnx")
    _one_error_line(r, 'pip install "reconad[export]"')

"""Conformal p-values and Benjamini-Hochberg: the formulas, the guarantee on real images,
and `reconad predict --alpha / --fdr / --csv`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reconad import Detector
from reconad.cli import app
from reconad.conformal import benjamini_hochberg, p_values
from reconad.detector import NotFittedError

runner = CliRunner()


def test_p_value_counts_held_out_scores_at_least_as_high():
    cal = [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(
        p_values(cal, [0.5, 2.0, 2.5, 4.0, 9.0]), [1, 4 / 5, 3 / 5, 2 / 5, 1 / 5]
    )
    with pytest.raises(ValueError, match="no held-out"):
        p_values([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        p_values([1.0, np.nan], [1.0])


def test_benjamini_hochberg_rejects_up_to_the_last_p_under_its_line():
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.5])
    # sorted 0.01 0.03 0.04 0.2 0.5 against q k / m = 0.02 0.04 0.06 0.08 0.10 at q = 0.1:
    # the last k under the line is 3, so the three smallest are rejected
    np.testing.assert_array_equal(benjamini_hochberg(p, 0.1), [True, True, True, False, False])
    assert not benjamini_hochberg(p, 0.001).any()
    assert benjamini_hochberg([], 0.1).shape == (0,)
    with pytest.raises(ValueError, match="false discovery rate"):
        benjamini_hochberg(p, 1.5)


@pytest.fixture(scope="module")
def ones(mnist_test):
    """A pca detector on 512 real MNIST ones; the scores of the 623 other ones (normal) and
    of 1,000 other digits (anomalous), none of them seen in fitting."""
    idx = np.flatnonzero(mnist_test.labels == 1)
    det = Detector("pca", progress=False).fit(mnist_test.subset(idx[:512]))
    normal = det.score_samples(mnist_test.subset(idx[512:]))
    others = det.score_samples(mnist_test.subset(np.flatnonzero(mnist_test.labels != 1)[:1000]))
    return det, normal, others


def test_the_false_alarm_rate_holds_over_random_calibration_splits(ones):
    """The guarantee, measured: 200 random splits of real normal scores into 100 held-out
    and the rest; flagging p <= 0.05 flags at most 5% of normal images on average."""
    _, normal, others = ones
    rng = np.random.default_rng(0)
    far, tpr = [], []
    for _ in range(200):
        perm = rng.permutation(len(normal))
        cal, test = normal[perm[:100]], normal[perm[100:]]
        far.append((p_values(cal, test) <= 0.05).mean())
        tpr.append((p_values(cal, others) <= 0.05).mean())
    # exchangeable split: E[FAR] = floor(0.05 * 101) / 101 = 0.0495; 200 splits of 523
    # test images give a standard error near 0.002
    assert np.mean(far) <= 0.05 + 0.006
    assert np.mean(far) > 0.03  # not a rule that flags nothing
    assert np.mean(tpr) > 0.5  # and it still finds most other digits


def test_detector_p_values_survive_save_and_load(ones, mnist_test, tmp_path):
    det, _, _ = ones
    some = mnist_test.subset(np.arange(40))
    p = det.p_values(some)
    assert p.shape == (40,) and ((p > 0) & (p <= 1)).all()
    det.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert len(cfg["calibration"]["scores"]) == cfg["calibration"]["n_val"] == len(det.val_scores_)
    np.testing.assert_allclose(Detector.load(tmp_path / "m").p_values(some), p)
    bare = Detector("pca", val_fraction=0, progress=False).fit(mnist_test.subset(np.arange(64)))
    with pytest.raises(NotFittedError, match="held-out normal scores"):
        bare.p_values(some)


@pytest.fixture(scope="module")
def model_and_images(ones, mnist_test, tmp_path_factory):
    det, _, _ = ones
    root = tmp_path_factory.mktemp("conf")
    det.save(root / "m")
    idx = np.r_[
        np.flatnonzero(mnist_test.labels == 1)[600:606], np.flatnonzero(mnist_test.labels == 7)[:6]
    ]
    folder = root / "new"
    folder.mkdir()
    for i in idx:
        kind = "one" if mnist_test.labels[i] == 1 else "seven"
        Image.fromarray(mnist_test.images[i, 0]).save(folder / f"{kind}_{i}.png")
    return root / "m", folder


def test_predict_prints_p_values_and_decides_by_alpha_or_fdr(model_and_images, tmp_path):
    model, folder = model_and_images
    r = runner.invoke(app, ["predict", "--model", str(model), str(folder), "--json"])
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert r.exit_code == 0 and len(rows) == 12
    assert all(0 < row["p_value"] <= 1 for row in rows)
    r = runner.invoke(
        app, ["predict", "--model", str(model), str(folder), "--alpha", "0.05", "--json"]
    )
    for row in (json.loads(ln) for ln in r.stdout.splitlines()):
        assert row["verdict"] == ("anomalous" if row["p_value"] <= 0.05 else "normal")
    out = tmp_path / "batch.csv"
    r = runner.invoke(
        app, ["predict", "--model", str(model), str(folder), "--fdr", "0.1", "--csv", str(out)]
    )
    assert r.exit_code == 0, r.output
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 12 and list(table[0]) == ["path", "score", "p_value", "verdict"]
    p = np.array([float(t["p_value"]) for t in table])
    np.testing.assert_array_equal(
        [t["verdict"] == "anomalous" for t in table], benjamini_hochberg(p, 0.1)
    )
    sevens = [t["verdict"] for t in table if "seven_" in t["path"]]
    assert sevens.count("anomalous") >= 4  # other digits are found
    # the CSV it wrote may be replaced by the next run
    again = runner.invoke(app, ["predict", "--model", str(model), str(folder), "--csv", str(out)])
    assert again.exit_code == 0


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--alpha", "0.05", "--fdr", "0.1"], "choose one of"),
        (["--alpha", "1.5"], "--alpha 1.5: must lie in (0, 1)"),
        (["--fdr", "0"], "--fdr 0.0: must lie in (0, 1)"),
    ],
)
def test_bad_decision_options_are_one_line(model_and_images, extra, words):
    model, folder = model_and_images
    r = runner.invoke(app, ["predict", "--model", str(model), str(folder), *extra])
    assert r.exit_code == 2 and words in " ".join(r.output.split())


def test_csv_never_replaces_a_file_reconad_did_not_write(model_and_images, tmp_path):
    model, folder = model_and_images
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own,data\n1,2,3\n")
    r = runner.invoke(app, ["predict", "--model", str(model), str(folder), "--csv", str(notes)])
    assert r.exit_code == 2 and "refusing to replace" in " ".join(r.output.split())
    assert notes.read_text() == "my,own,data\n1,2,3\n"


def test_alpha_on_a_model_without_held_out_scores_is_refused(model_and_images, tmp_path):
    model, folder = model_and_images
    old = tmp_path / "old"
    old.mkdir()
    cfg = json.loads((model / "config.json").read_text())
    del cfg["calibration"]["scores"]  # as a model saved before they were kept
    (old / "config.json").write_text(json.dumps(cfg))
    (old / "weights.safetensors").write_bytes((model / "weights.safetensors").read_bytes())
    r = runner.invoke(app, ["predict", "--model", str(old), str(folder), "--alpha", "0.05"])
    assert r.exit_code == 2 and "does not keep" in " ".join(r.output.split())
    plain = runner.invoke(app, ["predict", "--model", str(old), str(folder)])
    assert plain.exit_code == 0 and all(ln.split()[1] == "-" for ln in plain.stdout.splitlines())

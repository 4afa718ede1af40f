"""The command line, end to end on real images, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reconad.cli import app
from tests.conftest import shared

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def png_folders(mnist_small, tmp_path_factory):
    """Real MNIST digits as PNG files: a folder of normal ones, and a mixed folder."""
    train, test, anomalous = mnist_small
    root = tmp_path_factory.mktemp("pngs")
    normal, new = root / "normal", root / "new"
    normal.mkdir()
    new.mkdir()
    for i, img in enumerate(train.images[:200]):
        Image.fromarray(img[0]).save(normal / f"{i:03d}.png")
    for i in (0, 1, 250, 251):  # two ones, two other digits
        kind = "anomalous" if anomalous[i] else "normal"
        Image.fromarray(test.images[i, 0]).save(new / f"{kind}_{i}.png")
    return normal, new


@pytest.fixture(scope="module")
def pca_model(png_folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "pca"
    r = _invoke("fit", "--data", png_folders[0], "--out", out, "--method", "pca")
    assert r.exit_code == 0, r.output
    return out


def test_help_explains_every_command():
    r = _invoke("--help")
    assert r.exit_code == 0
    for cmd in ("demo", "fit", "test", "predict", "benchmark", "list"):
        assert cmd in r.output
    r = _invoke("fit", "--help")
    assert "--data" in r.output and "--devices" in r.output and "resume" in r.output


def test_list_names_registered_methods():
    r = _invoke("list")
    assert r.exit_code == 0
    for name in ("ae", "ssim_ae", "pca", "iforest", "ocsvm"):
        assert name in r.output


def test_fit_writes_a_model_folder(pca_model):
    cfg = json.loads((pca_model / "config.json").read_text())
    assert cfg["method"] == "pca" and cfg["calibration"]["n_val"] == 20
    assert not pca_model.with_name(f".{pca_model.name}.checkpoint").exists()


def test_fit_ae_with_epochs_and_set(png_folders, tmp_path):
    out = tmp_path / "ae"
    r = _invoke(
        "fit",
        "--data",
        png_folders[0],
        "--out",
        out,
        "--epochs",
        "2",
        "--set",
        "batch_size=32",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hparams"]["epochs"] == 2 and cfg["hparams"]["batch_size"] == 32
    assert len(cfg["training"]["history"]) == 2


def test_fit_set_score_reaches_the_method_not_the_scoring_option(png_folders, tmp_path):
    # DDR-ID's own `score` (fused, latent or image) shares its name with --score
    out = tmp_path / "ddrid"
    r = _invoke(
        "fit", "--data", png_folders[0], "--out", out, "--method", "ddrid", "--epochs", "1",
        "--set", "pretrain_epochs=1", "--set", "score=latent", "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hparams"]["score"] == "latent" and cfg["scoring"]["score"] == "native"


def test_predict_prints_score_and_verdict_and_writes_heatmaps(pca_model, png_folders, tmp_path):
    r = _invoke("predict", "--model", pca_model, png_folders[1], "--heatmaps", tmp_path / "hm")
    assert r.exit_code == 0, r.output
    lines = [ln.split() for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 4
    threshold = json.loads((pca_model / "config.json").read_text())["calibration"]["threshold"]
    for score, _p, verdict, _ in lines:
        assert verdict == ("anomalous" if float(score) > threshold else "normal")
    by_kind = {
        kind: [float(s) for s, _p, _, f in lines if f"/{kind}_" in f]
        for kind in ("normal", "anomalous")
    }
    assert min(by_kind["anomalous"]) > max(by_kind["normal"])
    assert sorted(p.name for p in (tmp_path / "hm").iterdir())[0].endswith(".png")
    assert len(list((tmp_path / "hm").glob("*_heatmap.png"))) == 4


def test_predict_json_and_threshold_override(pca_model, png_folders):
    r = _invoke("predict", "--model", pca_model, png_folders[1], "--json", "--threshold", "-1")
    rows = [json.loads(ln) for ln in r.output.splitlines()]
    assert len(rows) == 4 and all(row["verdict"] == "anomalous" for row in rows)


def test_fit_on_an_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _invoke("fit", "--data", tmp_path / "empty", "--out", tmp_path / "m")
    assert r.exit_code == 2
    assert "empty" in r.output.lower() or "no image" in r.output.lower()
    assert not (tmp_path / "m").exists()


def test_predict_on_a_truncated_image_names_the_file(pca_model, png_folders, tmp_path):
    good = next(png_folders[1].iterdir()).read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(good[: len(good) // 2])
    r = _invoke("predict", "--model", pca_model, bad)
    assert r.exit_code == 2 and "cut.png" in r.output


def test_predict_with_a_missing_model_is_a_clear_error(tmp_path, png_folders):
    r = _invoke("predict", "--model", tmp_path / "nope", png_folders[1])
    assert r.exit_code == 2 and "config.json" in r.output


def test_predict_rgb_image_on_a_gray_model(pca_model, tmp_path):
    p = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(p)
    r = _invoke("predict", "--model", pca_model, p)
    assert r.exit_code == 2 and "1-channel" in r.output


@pytest.fixture(scope="module")
def tile_tree(tmp_path_factory):
    """A small MVTec-style tree of real Magnetic-Tile images (varying sizes, real masks)."""
    src = shared("magnetic-tile")
    root = tmp_path_factory.mktemp("tile")
    for sub, n in (("train/good", 24), ("test/good", 6), ("test/blowhole", 6)):
        (root / sub).mkdir(parents=True)
        for f in sorted((src / sub).iterdir())[:n]:
            (root / sub / f.name).write_bytes(f.read_bytes())
    (root / "ground_truth/blowhole").mkdir(parents=True)
    for f in (root / "test/blowhole").iterdir():
        m = src / "ground_truth/blowhole" / f"{f.stem}_mask.png"
        (root / "ground_truth/blowhole" / m.name).write_bytes(m.read_bytes())
    return root


def test_fit_and_test_on_an_mvtec_style_tree(tile_tree, tmp_path):
    model = tmp_path / "m"
    r = _invoke("fit", "--data", tile_tree, "--out", model, "--method", "pca", "--image-size", "32")
    assert r.exit_code == 0, r.output
    r = _invoke("test", "--model", model, "--data", tile_tree, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert "auroc[blowhole]" in r.output  # issue 20 item 7: not swallowed as rich markup
    res = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    for k in ("auroc", "ap", "pixel_auroc", "aupro"):
        assert 0.0 <= res[k] <= 100.0
    assert set(res["auroc_per_type"]) == {"blowhole"}
    assert (tmp_path / "rep" / "roc.png").exists()


def test_fit_keep_aspect_on_images_of_varying_shape(tile_tree, tmp_path):
    model = tmp_path / "m"
    r = _invoke(
        "fit", "--data", tile_tree, "--out", model, "--method", "pca", "--image-size", "32",
        "--keep-aspect",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((model / "config.json").read_text())["input"]["keep_aspect"] is True
    assert "aspect ratio kept" in (model / "MODEL_CARD.md").read_text()
    r = _invoke("test", "--model", model, "--data", tile_tree, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert "aspect ratio" in _invoke("fit", "--help").output


def test_fit_without_image_size_on_varying_sizes_says_what_to_do(tile_tree, tmp_path):
    r = _invoke("fit", "--data", tile_tree, "--out", tmp_path / "m", "--method", "pca")
    assert r.exit_code == 2 and "size" in r.output


def test_benchmark_prints_the_table_and_resumes(tmp_path):
    root = shared("mnist").parent
    out = tmp_path / "bench"
    args = (
        "benchmark",
        "--dataset",
        "mnist",
        "--method",
        "pca",
        "--classes",
        "1",
        "--data-root",
        root,
        "--out",
        out,
        "--no-progress",
    )
    r = _invoke(*args)
    assert r.exit_code == 0, r.output
    assert "mean" in r.output and (out / "summary.csv").exists()
    rec = json.loads((out / "class1_seed0.json").read_text())
    assert rec["auroc"] > 90 and rec["n_test"] == 10000 and rec["versions"]["torch"]
    r = _invoke(*args)  # finished runs are skipped, not retrained
    assert r.exit_code == 0 and "training" not in r.output


def test_benchmark_names_its_protocol_and_the_earlier_spelling_gives_the_same_record(tmp_path):
    """`reconad benchmark one-class ...` and `reconad benchmark --dataset ...` run the same
    protocol; a protocol the group does not know, or another protocol's option, is one line."""
    root = shared("mnist").parent
    common = ["--dataset", "mnist", "--method", "pca", "--classes", "1", "--data-root", root]
    r = _invoke("benchmark", "one-class", *common, "--out", tmp_path / "n", "--no-progress")
    assert r.exit_code == 0, r.output
    r = _invoke("benchmark", *common, "--out", tmp_path / "o", "--no-progress")
    assert r.exit_code == 0, r.output
    new, old = (json.loads((tmp_path / d / "class1_seed0.json").read_text()) for d in "no")
    assert new["auroc"] == old["auroc"] and new["calibrated"] == old["calibrated"]
    r = _invoke("benchmark", "--protocol", "bogus", *common)
    assert r.exit_code == 2 and "unknown protocol 'bogus'" in r.output
    r = _invoke("benchmark", *common, "--size", "64")
    assert r.exit_code == 2 and "--size applies to the industrial protocol only" in r.output
    r = _invoke("benchmark", *common, "--attacks", "fgsm")
    assert r.exit_code == 2 and "--attacks applies to the adversarial protocol only" in r.output


def test_benchmark_rejects_unknown_dataset_and_classes(tmp_path):
    r = _invoke("benchmark", "--dataset", "imagenet", "--out", tmp_path)
    assert r.exit_code == 2 and "unknown dataset" in r.output
    r = _invoke("benchmark", "--dataset", "mnist", "--classes", "12", "--out", tmp_path)
    assert r.exit_code == 2 and "outside" in r.output
    r = _invoke("benchmark", "one-class", "--dataset", "mnist", "--seeds", "x", "--out", tmp_path)
    assert r.exit_code == 2 and "--seeds 'x'" in r.output
    r = _invoke("benchmark", "one-class", "--dataset", "mnist", "--method", "nosuch")
    assert r.exit_code == 2 and "error: unknown method 'nosuch'" in r.output


def test_fit_chooses_the_image_score_on_held_out_normals_by_default(pca_model):
    cfg = json.loads((pca_model / "config.json").read_text())["scoring"]
    assert cfg["image_score_option"] == "auto"
    assert cfg["image_score"] in ("native", "map_max", "map_topk")
    assert set(cfg["image_score_auroc"]) == {"native", "map_max", "map_topk"}

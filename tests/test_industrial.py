"""The industrial protocol: metrics at each mask's own size, resume, the summary, bad input.

Covered elsewhere and not repeated here: a mask whose size differs from its image's
(tests/test_folders.py::test_mvtec_mask_of_another_size), images of different sizes without
a size to resize to, and gray and colour files mixed in a plain reader call
(test_folders.py::test_sizes_differ_needs_size, ::test_mixed_gray_and_colour).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reconad.cli import app
from reconad.data.folders import read_mvtec
from reconad.data.imageset import DataError
from reconad.detector import Detector, resize_maps
from reconad.evaluate import evaluate as evaluate_industrial
from reconad.protocols import IndustrialSettings, run_benchmark
from reconad.protocols.industrial import Industrial, collect_industrial, resolve_category
from reconad.protocols.industrial_summary import (
    render_industrial_table,
    summarize_industrial,
    write_industrial_summary,
)
from tests.conftest import shared

runner = CliRunner()


def run_industrial(dataset, method, seeds, out, log=print, **kw):
    """The industrial protocol's records, from the settings spelt as arguments."""
    s = IndustrialSettings(dataset=dataset, method=method, seeds=tuple(seeds), out=out, **kw)
    return run_benchmark(s, log=log).records


# (folder, name, (h, w), defect box (y0, y1, x0, x1) or None): sizes vary on purpose
TEST_IMAGES = [
    ("good", "g0", (24, 32), None),
    ("good", "g1", (30, 20), None),
    ("good", "g2", (28, 28), None),
    ("good", "g3", (20, 36), None),
    ("scratch", "s0", (24, 32), (4, 16, 6, 20)),
    ("scratch", "s1", (32, 24), (10, 26, 2, 14)),
    ("scratch", "s2", (26, 30), (0, 12, 12, 30)),
    ("dent", "d0", (28, 22), (8, 22, 4, 18)),
    ("dent", "d1", (22, 30), None),  # a defective image with an empty mask
]


def _texture(rng, h: int, w: int) -> np.ndarray:
    return (100 + 20 * rng.random((h, w))).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def category(tmp_path) -> Path:
    """A tiny MVTec-style category: gray textures of varying size, bright defects, masks."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tiles"
    for i in range(12):
        h, w = (20 + 2 * (i % 5), 24 + 3 * (i % 4))
        _save(root / "train" / "good" / f"{i:03d}.png", _texture(rng, h, w))
    for folder, name, (h, w), box in TEST_IMAGES:
        img = _texture(rng, h, w)
        if folder != "good":
            mask = np.zeros((h, w), np.uint8)
            if box:
                y0, y1, x0, x1 = box
                img[y0:y1, x0:x1] = 250
                mask[y0:y1, x0:x1] = 255
            _save(root / "ground_truth" / folder / f"{name}_mask.png", mask)
        _save(root / "test" / folder / f"{name}.png", img)
    return root


class _Stub:
    """A fitted-detector stand-in: given scores, and maps drawn from the masks at 16x16."""

    threshold_ = float("nan")

    def __init__(self, scores: np.ndarray, maps: np.ndarray | None) -> None:
        self.scores, self.maps = scores, maps

    def explain(self, data, n=None, map_scores=False):
        return {"scores": self.scores, "maps": self.maps, "extras": {}}


def _mask_maps(test) -> np.ndarray:
    """Each mask shrunk to 16x16: a perfect map, at the model's size, of a shape per image."""
    masks = [
        np.zeros(s, np.float32) if m is None else m.astype(np.float32)
        for m, s in zip(test.masks, test.orig_sizes, strict=True)
    ]
    return np.stack(resize_maps(masks, [(16, 16)] * len(masks)))


def test_maps_are_scored_at_each_images_own_size(category):
    test = read_mvtec(category, "test", size=16)
    assert len(set(test.orig_sizes)) > 5  # sizes vary
    res = evaluate_industrial(_Stub(np.arange(9.0), _mask_maps(test)), test)
    # A map that is right at 16x16 is right at the masks' sizes only if each map goes back
    # to its own image's (h, w): swapped or shared sizes would misalign or fail.
    assert res["pixel_auroc"] > 97 and res["aupro"] > 80
    assert res["n_pixels"] == sum(h * w for h, w in test.orig_sizes)
    # And a real detector returns one map per image at that image's own size.
    det = Detector("pca", image_size=16, progress=False).fit(read_mvtec(category, "train", 16))
    maps = det.anomaly_maps(test, original_size=True)
    assert [m.shape for m in maps] == test.orig_sizes


def test_an_empty_mask_counts_in_image_metrics_but_adds_no_positive_pixel(category):
    test = read_mvtec(category, "test", size=16)
    names = [Path(p).stem for p in test.paths]
    scores = np.where(np.arange(9) >= 4, 10.0, 1.0)  # goods low, defects high...
    scores[names.index("d1")] = 0.0  # ...but the empty-mask defect lowest of all
    res = evaluate_industrial(_Stub(scores, _mask_maps(test)), test)
    assert res["n_anomalous"] == 5 and res["n_empty_masks"] == 1
    assert res["auroc"] == pytest.approx(100 * 16 / 20)  # d1 ranks below all 4 goods
    assert res["auroc_per_type"] == {"dent": pytest.approx(50.0), "scratch": 100.0}
    boxes = [b for *_, b in TEST_IMAGES if b]
    assert res["n_positive_pixels"] == sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes)
    assert res["n_pixel_images"] == 9  # its pixels still count, as normal ones


def test_protocol_writes_a_record_per_seed_and_resumes(category, tmp_path):
    out, logs = tmp_path / "out", []
    recs = run_industrial(str(category), "pca", [0], out, size=14, log=logs.append)
    rec = json.loads((out / "seed0.json").read_text())
    assert recs == [rec] and rec["input"] == {"channels": 1, "height": 14, "width": 14}
    for k in ("auroc", "ap", "pixel_auroc", "aupro"):
        assert 0.0 <= rec[k] <= 100.0
    assert rec["auroc"] > 90  # bright defects on a flat texture
    assert set(rec["auroc_per_type"]) == {"dent", "scratch"}
    assert rec["n_train"] + rec["n_val"] == 12 and rec["n_val"] == 1
    assert np.isfinite(rec["calibrated"]["threshold"]) and "calibrated_pixel" in rec
    assert 0 < rec["peak_rss_mb"] <= rec["peak_rss_mb_with_metrics"]
    assert rec["fit_seconds"] >= 0 and rec["git_commit"] is not None and rec["versions"]
    assert rec["stage_seconds"] == {}  # pca has no iterative training stage
    logs.clear()
    recs = run_industrial(str(category), "pca", [0, 1], out, size=14, log=logs.append)
    assert [r["seed"] for r in recs] == [0, 1] and recs[0] == rec  # seed 0 read back
    assert sum("training" in m for m in logs) == 1 and "seed 1" in logs[0]
    summary = summarize_industrial(recs)
    rows = {r["metric"]: r for r in summary["rows"]}
    assert rows["auroc"]["mean"] == pytest.approx(np.mean([r["auroc"] for r in recs]))
    assert rows["auroc"]["n_seeds"] == 2 and "auroc[dent]" in rows
    write_industrial_summary(summary, out)
    assert (out / "summary.csv").read_text().splitlines()[
        0
    ] == "metric,mean,std,n_seeds,seed0,seed1"
    # an analysis script's output beside the runs is not a record (utad_terms.py writes one)
    (out / "seed7.json").write_text(json.dumps({"model": "m", "rows": []}))
    assert collect_industrial(out) == recs
    with pytest.raises(ValueError, match="other settings.*size"):  # 16x16 beside 14x14
        run_industrial(str(category), "pca", [2], out, size=16)
    with pytest.raises(ValueError, match="hparams.variance"):  # another hyper-parameter
        run_industrial(str(category), "pca", [2], out, size=14, hparams={"variance": 0.5})
    # the default, set explicitly, is the same run: resumed, not refused
    again = run_industrial(str(category), "pca", [0], out, size=14, hparams={"variance": 0.9})
    assert again == [rec]


def test_saved_models_reload_and_score_as_in_the_run(category, tmp_path):
    keep = tmp_path / "models"
    recs = run_industrial(
        str(category), "pca", [0], tmp_path / "out", size=14, log=lambda m: None, save_models=keep
    )
    det = Detector.load(keep / "seed0")
    test = read_mvtec(category, "test", size=(14, 14), channels=1)
    res = evaluate_industrial(det, test)
    assert res["auroc"] == pytest.approx(recs[0]["auroc"])


def test_a_method_without_maps_gets_blank_pixel_columns(category, tmp_path):
    recs = run_industrial(str(category), "iforest", [0], tmp_path, size=12, log=lambda m: None)
    assert recs[0]["pixel_auroc"] is None and recs[0]["aupro"] is None
    assert "no maps" in recs[0]["pixel_note"] and 0 <= recs[0]["auroc"] <= 100
    summary = summarize_industrial(recs)
    write_industrial_summary(summary, tmp_path)
    assert "pixel_auroc,,,0," in (tmp_path / "summary.csv").read_text()
    assert render_industrial_table(summary).row_count == len(summary["rows"])


def test_gray_and_colour_mixed(category, tmp_path):
    gray = np.asarray(Image.open(category / "train/good/000.png"))
    Image.fromarray(np.stack([gray] * 3, -1)).save(category / "train/good/000.png")
    args = ["benchmark", "--dataset", str(category), "--method", "pca", "--size", "12"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--no-progress"])
    assert r.exit_code == 2 and "mixed" in r.output and "--channels 1" in r.output
    assert not list((tmp_path / "a").glob("seed*.json"))
    # converted on request; colour test images follow the model's channel count
    Image.fromarray(np.stack([gray] * 3, -1)).save(category / "test/good/g0.png")
    recs = run_industrial(str(category), "pca", [0], tmp_path / "b", size=12, channels=1)
    assert recs[0]["input"]["channels"] == 1 and recs[0]["n_test"] == 9


def test_magnetic_tile_name_resolves_under_the_data_root(tmp_path):
    with pytest.raises(DataError, match=r"no MVTec-style category at .*magnetic-tile"):
        resolve_category("magnetic-tile", tmp_path)
    with pytest.raises(DataError, match="not an MVTec-style category"):
        resolve_category(str(tmp_path), None)


@pytest.fixture(scope="module")
def tile_subset(tmp_path_factory) -> Path:
    """Real Magnetic-Tile files, a few per folder (one of the empty `uneven` masks among
    them), as `<root>/magnetic-tile`: the full set's exact pixel metrics take about a minute."""
    src = shared("magnetic-tile")
    root = tmp_path_factory.mktemp("data")
    dst = root / "magnetic-tile"
    picks = {"train/good": 40, "test/good": 8}
    for d in sorted((src / "test").iterdir()):
        picks.setdefault(f"test/{d.name}", 4)
    for sub, n in picks.items():
        files = sorted((src / sub).iterdir())[:n]
        if sub == "test/uneven":
            files[-1] = src / sub / "exp3_num_45042.jpg"  # its mask is empty
        (dst / sub).mkdir(parents=True)
        for f in files:
            shutil.copy(f, dst / sub / f.name)
            m = src / "ground_truth" / f.parent.name / f"{f.stem}_mask.png"
            if m.exists():
                (dst / "ground_truth" / f.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(m, dst / "ground_truth" / f.parent.name / m.name)
    return root


def test_real_magnetic_tile_benchmark_command_with_pca(tile_subset, tmp_path):
    out = tmp_path / "res"
    args = ["benchmark", "--dataset", "magnetic-tile", "--method", "pca", "--size", "24"]
    args += ["--data-root", str(tile_subset), "--out", str(out), "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "pixel AUROC" in r.output and "AUPRO" in r.output
    rec = json.loads((out / "seed0.json").read_text())
    types = {d.name for d in (shared("magnetic-tile") / "test").iterdir()} - {"good"}
    assert set(rec["auroc_per_type"]) == types == {"blowhole", "break", "crack", "fray", "uneven"}
    for k in ("auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= rec[k] <= 100.0
    assert rec["pixel_auroc"] > 50  # better than chance even for PCA at 24x24
    assert rec["n_empty_masks"] == 1 and rec["n_anomalous"] == 20 and rec["n_test"] == 28
    assert rec["settings"]["channels"] == 1 and rec["dataset"] == "magnetic-tile"
    r = runner.invoke(app, args)  # the finished seed is read back, not retrained
    assert r.exit_code == 0 and "training" not in r.output and "image AUROC" in r.output


def test_records_hold_the_image_score_chosen_without_test_labels(category, tmp_path):
    # 9 of the 12 training normals held out: enough to choose by (score_choice.MIN_IMAGES)
    kw = {"size": 14, "val_fraction": 0.75, "log": lambda m: None}
    rec = run_industrial(str(category), "pca", [0], tmp_path / "native", **kw)[0]
    chosen = rec["image_score_choice"]["chosen"]
    assert set(rec["image_score_choice"]["synthetic_auroc"]) == {"native", "map_max", "map_topk"}
    assert rec["image_score_choice"]["defect_strength"] in (1.0, 0.5, 0.25, 0.125)
    want = rec["auroc"] if chosen == "native" else rec["components"][chosen]
    assert rec["auroc_chosen"] == pytest.approx(want)
    rows = {r["metric"]: r for r in summarize_industrial([rec])["rows"]}
    assert rows["auroc_chosen"]["mean"] == pytest.approx(want)
    assert rows["image_score_chosen"]["per_seed"] == {0: chosen}
    # the detector itself scoring with auto: the headline AUROC is the chosen score's
    auto = run_industrial(str(category), "pca", [0], tmp_path / "auto", image_score="auto", **kw)
    assert auto[0]["settings"]["image_score"] == "auto"
    assert auto[0]["image_score_choice"] == rec["image_score_choice"]
    assert auto[0]["auroc"] == pytest.approx(want) == auto[0]["auroc_chosen"]
    # too few held-out normals to choose by: nothing recorded, no row in the summary
    few = run_industrial(str(category), "pca", [0], tmp_path / "few", size=14, log=lambda m: None)
    assert "image_score_choice" not in few[0]
    assert "auroc_chosen" not in {r["metric"] for r in summarize_industrial(few)["rows"]}


def test_tiles_in_the_industrial_protocol(category, tmp_path):
    rec = run_industrial(
        str(category), "pca", [0], tmp_path, size=28, patch=14, log=lambda m: None
    )[0]
    assert rec["settings"]["patch"] == 14
    assert rec["input"]["patch"] == 14 and rec["input"]["working_size"] == [28, 28]
    # bright defects, found by tiles (dent d1 has an empty mask and no defect to find)
    assert rec["auroc_per_type"]["scratch"] == 100 and rec["pixel_auroc"] > 95
    with pytest.raises(ValueError, match="patch"):  # a folder of tiled runs refuses whole ones
        run_industrial(str(category), "pca", [1], tmp_path, size=28, log=lambda m: None)


def test_aspect_ratio_kept_in_the_industrial_protocol(category, tmp_path):
    # the category's images differ in shape (20 x 36 to 32 x 24): letterboxed, not squashed
    out = tmp_path / "aspect"
    rec = run_industrial(
        str(category), "pca", [0], out, size=28, keep_aspect=True, log=lambda m: None
    )[0]
    assert rec["settings"]["keep_aspect"] is True and rec["input"]["keep_aspect"] is True
    assert rec["auroc_per_type"]["scratch"] == 100 and rec["pixel_auroc"] > 95
    with pytest.raises(ValueError, match="keep_aspect"):  # a folder of them refuses squashing
        run_industrial(str(category), "pca", [1], out, size=28, log=lambda m: None)
    plain = IndustrialSettings(dataset=str(category), method="pca", seeds=(0,), size=28)
    boxed = IndustrialSettings(
        dataset=str(category), method="pca", seeds=(0,), size=28, keep_aspect=True
    )
    assert Industrial(boxed).default_out().name == Industrial(plain).default_out().name + "+aspect"


def test_one_class_scoring_options_are_refused_in_one_line(category, tmp_path):
    # --score / --difficulty fuse views of the one-class protocol; the industrial protocol
    # reads its image score off the maps (--image-score). They once went, unnoticed, into
    # the method's hyper-parameters.
    args = ["benchmark", "--dataset", str(category), "--method", "ae", "--size", "12"]
    for extra in (["--score", "multiview"], ["--difficulty", "entropy"]):
        r = runner.invoke(app, [*args, *extra, "--out", str(tmp_path / "a"), "--no-progress"])
        assert r.exit_code == 2 and "one-class protocol only" in r.output
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_map_smoothing_in_the_industrial_protocol(category, tmp_path):
    out = tmp_path / "smooth"
    rec = run_industrial(
        str(category), "pca", [0], out, size=28, val_fraction=0.75, map_smoothing="auto",
        log=lambda m: None,
    )[0]  # fmt: skip
    assert rec["settings"]["map_smoothing"] == "auto" and rec["n_val"] >= 8
    assert rec["map_sigma"] in (0.0, 1.0, 2.0, 4.0, 8.0)
    assert set(rec["map_sigma_auroc"]) == {"0", "1", "2", "4", "8"}
    assert 0 <= rec["pixel_auroc"] <= 100
    args = ["benchmark", "--dataset", str(category), "--method", "pca", "--size", "28"]
    r = runner.invoke(app, [*args, "--map-smoothing", "wide", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "a Gaussian width in pixels" in r.output
    assert not (tmp_path / "b").exists()

"""Protocol runs: one record per (class, seed), resumable, summarised beside paper numbers."""

from __future__ import annotations

import json

import pytest

from reconad.protocols import OneClassSettings, fingerprint, one_class, run_benchmark
from reconad.protocols.one_class_summary import render_table, summarize, write_summary
from tests.conftest import shared


def run_protocol(dataset, method, classes, seeds, out, log=print, **kw):
    """The one-class protocol's records, from the settings spelt as arguments."""
    s = OneClassSettings(
        dataset=dataset, method=method, classes=tuple(classes), seeds=tuple(seeds), out=out, **kw
    )
    return run_benchmark(s, log=log).records


def test_protocol_writes_one_record_per_class_and_seed_and_resumes(tmp_path, monkeypatch):
    root = shared("mnist").parent
    recs = run_protocol(
        "mnist", "pca", [0, 1], [0], tmp_path, root=root, progress=False, log=lambda *a: None
    )
    assert sorted(p.name for p in tmp_path.glob("class*.json")) == [
        "class0_seed0.json",
        "class1_seed0.json",
    ]
    assert all(r["n_train"] + r["n_val"] in (5923, 6742) for r in recs)

    def must_not_run(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(one_class, "run_one_class", must_not_run)
    again = run_protocol("mnist", "pca", [0, 1], [0], tmp_path, root=root, log=lambda *a: None)
    assert [r["auroc"] for r in again] == [r["auroc"] for r in recs]
    # Other settings in the same folder are refused, not mixed into its summary.
    for kw, what in (
        ({"hparams": {"variance": 0.5}}, "hparams.variance"),
        ({"epochs_scale": 0.1}, "epochs_scale"),
        ({"scoring": {"score": "multiview"}}, "scoring"),
        ({"preset": "default", "hparams": {"variance": 0.9}}, None),  # the same, spelt out
    ):
        call = lambda kw=kw: run_protocol(  # noqa: E731
            "mnist", "pca", [0, 1], [0], tmp_path, root=root, log=lambda *a: None, **kw
        )
        if what is None:
            assert len(call()) == 2  # read back, nothing trained (run_one_class is stubbed)
        else:
            with pytest.raises(ValueError, match=f"other settings \\({what} differ"):
                call()


def test_protocol_keeps_the_fitted_models_it_scored_with(tmp_path):
    from reconad.data.datasets import load_dataset
    from reconad.detector import Detector
    from reconad.metrics import image_metrics

    root = shared("mnist").parent
    (rec,) = run_protocol(
        "mnist", "pca", [3], [1], tmp_path / "res", root=root, progress=False,
        log=lambda *a: None, save_models=tmp_path / "models",
    )  # fmt: skip
    det = Detector.load(tmp_path / "models" / "class3_seed1")
    test = load_dataset("mnist", "test", root=root)
    auroc = 100 * image_metrics((test.labels != 3).astype(int), det.score_samples(test))["auroc"]
    assert auroc == pytest.approx(rec["auroc"], abs=1e-6)
    assert det.threshold_ == pytest.approx(rec["calibrated"]["threshold"])


def _rec(c, seed, auroc):
    return {
        "dataset": "mnist",
        "method": "arnet",
        "preset": "cpu",
        "class": c,
        "class_name": str(c),
        "seed": seed,
        "auroc": auroc,
        "fit_seconds": 10.0,
        "score_seconds": 1.0,
        "peak_rss_mb": 100.0,
    }


def test_summary_puts_published_numbers_beside_ours(tmp_path):
    recs = [_rec(0, 0, 98.0), _rec(0, 1, 99.0), _rec(8, 0, 90.0), _rec(8, 1, 92.0)]
    s = summarize(recs)
    row0 = s["rows"][0]
    assert row0["auroc"] == pytest.approx(98.5) and row0["auroc_std"] == pytest.approx(0.5)
    assert row0["published"] == 98.6 and row0["diff"] == pytest.approx(-0.1)
    assert s["rows"][1]["published"] == 93.6
    assert s["mean"] == pytest.approx((98.5 + 91.0) / 2)
    # Seed means are 94.0 and 95.5: their spread is the mean's std over seeds.
    assert s["mean_std_over_seeds"] == pytest.approx(0.75)
    # Two of ten classes: the published mean beside ours is over the same two classes.
    assert s["published_mean"] == pytest.approx((98.6 + 93.6) / 2)
    assert s["diff_mean"] == pytest.approx(s["mean"] - (98.6 + 93.6) / 2)
    assert "ARNet" in s["published_source"]
    write_summary(s, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["mean"] == s["mean"]
    assert (tmp_path / "summary.csv").read_text().splitlines()[-1].startswith("mean,")
    assert render_table(s).row_count == 3


def test_summary_of_every_class_shows_the_papers_own_mean():
    s = summarize([_rec(c, 0, 95.0) for c in range(10)])
    assert s["published_mean"] == 98.3


def test_summary_without_published_numbers():
    s = summarize([_rec(0, 0, 80.0) | {"method": "ae"}])
    assert s["rows"][0]["published"] is None and s["published_mean"] is None


def test_summary_covers_every_seed_finished_in_the_folder(tmp_path):
    from reconad.protocols.one_class import collect_records

    for c, seed, auroc in [(0, 0, 98.0), (0, 1, 99.0), (1, 0, 97.0), (5, 0, 50.0)]:
        (tmp_path / f"class{c}_seed{seed}.json").write_text(json.dumps(_rec(c, seed, auroc)))
    recs = collect_records(tmp_path, classes=[0, 1])
    assert [(r["class"], r["seed"]) for r in recs] == [(0, 0), (1, 0), (0, 1)]
    assert summarize(recs)["rows"][0]["seeds"] == [0, 1]


def test_a_live_config_matches_the_settings_a_file_stores():
    """A fitted detector's config holds tuples (milestones, widths) where JSON holds lists:
    reloading a detector this run just saved must not count as "other settings" (it did, for
    DDR-ID's milestones, and stopped the adversarial protocol's resume)."""
    import dataclasses

    from reconad.methods import get_method, list_methods

    for name in list_methods():
        cls = get_method(name)
        for preset in cls.presets:
            wanted = fingerprint.resolved_settings(name, preset)
            live = {**wanted, "hparams": dataclasses.asdict(cls.make_config(preset))}
            assert fingerprint.settings_mismatch(live, wanted) == [], (name, preset)
    wanted = fingerprint.resolved_settings("ddrid")
    other = {**wanted, "hparams": {**wanted["hparams"], "milestones": (0.5,)}}
    assert fingerprint.settings_mismatch(other, wanted) == ["hparams.milestones"]

"""Adversarial-example detection: the attacks' definitions, and the protocol's bookkeeping
(success rate on originally-correct images only, resumable records), on real MNIST."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reconad.adversarial import (
    attack,
    fgsm,
    parse_epsilons,
    pgd,
    predict,
    resolve_backend,
    train_classifier,
)
from reconad.protocols import AdversarialSettings, run_benchmark
from reconad.protocols import adversarial as protocol_mod
from reconad.protocols.adversarial import render_adversarial, summarize_adversarial


def run_adversarial(dataset, method, classes, out, settings, log=print, detectors=None, **kw):
    """The adversarial protocol's records, from the settings spelt as arguments."""
    s = dataclasses.replace(
        settings, dataset=dataset, method=method, classes=tuple(classes), out=out,
        save_models=detectors, **kw,
    )  # fmt: skip
    return run_benchmark(s, log=log).records


EPS = 8 / 255


@pytest.fixture(scope="module")
def classifier(mnist_test):
    """A SmallCNN trained briefly on 1,500 real MNIST digits, and 64 other digits to attack."""
    train = mnist_test.subset(np.arange(1500))
    model = train_classifier(train.images, train.labels, 10, epochs=6, width=8, seed=0)
    x = torch.from_numpy(mnist_test.images[2000:2064]).float() / 255.0
    y = torch.from_numpy(mnist_test.labels[2000:2064])
    return model, x, y


def _loss(model, x, y) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def test_fgsm_moves_every_pixel_by_exactly_eps_within_0_1_and_raises_the_loss(classifier):
    model, x, y = classifier
    adv = fgsm(model, x, y, EPS)
    assert adv.min() >= 0 and adv.max() <= 1
    moved = (adv - x).abs()
    clipped = (adv == 0) | (adv == 1)
    assert torch.allclose(moved[~clipped], torch.full_like(moved[~clipped], EPS), atol=1e-6)
    assert (~clipped).float().mean() > 0.1  # the check is not vacuous
    assert _loss(model, adv, y) > _loss(model, x, y)


def test_pgd_stays_in_the_eps_ball_and_beats_fgsm(classifier):
    model, x, y = classifier
    adv = pgd(model, x, y, EPS, steps=10, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= EPS + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert _loss(model, adv, y) > _loss(model, fgsm(model, x, y, EPS), y)


def test_art_backend_follows_the_same_definitions(classifier):
    pytest.importorskip("art")
    model, x, y = classifier
    ours = attack(model, x, y, "fgsm", EPS, backend="torch")
    theirs = attack(model, x, y, "fgsm", EPS, backend="art")
    assert (ours - theirs).abs().max() < 1e-5
    adv = attack(model, x, y, "pgd", EPS, backend="art", pgd_steps=5)
    assert (adv - x).abs().max() <= EPS + 1e-6 and _loss(model, adv, y) > _loss(model, x, y)


def test_bad_settings_are_refused():
    assert parse_epsilons("2/255, 0.03") == (2 / 255, 0.03)
    for bad in ("x", "0", "2"):
        with pytest.raises(ValueError, match="epsilon"):
            parse_epsilons(bad)
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("cleverhans")
    with pytest.raises(ValueError, match="unknown attack"):
        AdversarialSettings(dataset="mnist", attacks=("cw",))
    with pytest.raises(ValueError, match="fit_on"):
        AdversarialSettings(dataset="mnist", fit_on="some")


def test_protocol_counts_success_on_originally_correct_images_and_resumes(
    mnist_test, tmp_path, monkeypatch
):
    train = mnist_test.subset(np.arange(1200))
    test = mnist_test.subset(np.arange(5000, 5600))
    splits = {"train": train, "test": test}
    monkeypatch.setattr("reconad.data.datasets.load_dataset", lambda n, s, root=None: splits[s])
    settings = AdversarialSettings(
        dataset="mnist",
        attacks=("fgsm", "pgd"),
        epsilons=(4 / 255, 0.2),
        pgd_steps=3,
        backend="torch",
        classifier_epochs=10,
        classifier_width=8,
    )
    recs = run_adversarial("mnist", "pca", [3], tmp_path, settings, progress=False, log=lambda m: 0)
    (rec,) = recs
    clf, meta = protocol_mod.get_classifier(tmp_path, train, test, 10, 8, 0)
    ours = test.subset(test.labels == 3)
    correct = predict(clf, ours.images) == ours.labels
    assert 0 < correct.sum() < len(ours)  # some test threes are misclassified: left out
    assert rec["n_correct"] == correct.sum() and rec["n_test"] == len(ours)
    big = rec["entries"]["fgsm@0.2"]
    assert big["n_correct"] == correct.sum()
    assert big["success_rate"] == pytest.approx(100 * big["n_success"] / big["n_correct"])
    assert big["success_rate"] > rec["entries"]["fgsm@0.0156863"]["success_rate"]
    assert big["max_linf"] <= 0.2 + 0.5 / 255 and big["auroc"] > 50
    saved = json.loads((tmp_path / "class3_seed0.json").read_text())
    assert set(saved["entries"]) == {"fgsm@0.0156863", "fgsm@0.2", "pgd@0.0156863", "pgd@0.2"}

    def must_not_run(*a, **k):
        raise AssertionError("a finished entry was recomputed")

    monkeypatch.setattr(protocol_mod, "attack", must_not_run)
    monkeypatch.setattr(protocol_mod, "_load_detector", must_not_run)  # nothing left to score
    monkeypatch.setattr(protocol_mod, "get_classifier", must_not_run)  # nor to attack
    again = run_adversarial("mnist", "pca", [3], tmp_path, settings, progress=False, log=print)
    assert again[0]["entries"] == rec["entries"]
    # An entry from before a field existed is recomputed, with the same numbers (seeded).
    old = json.loads((tmp_path / "class3_seed0.json").read_text())
    del old["entries"]["pgd@0.2"]["components_paired"]
    (tmp_path / "class3_seed0.json").write_text(json.dumps(old))
    monkeypatch.undo()
    monkeypatch.setattr("reconad.data.datasets.load_dataset", lambda n, s, root=None: splits[s])
    redone = run_adversarial("mnist", "pca", [3], tmp_path, settings, progress=False, log=print)
    for k in ("auroc", "auroc_paired", "success_rate", "n_success"):
        assert redone[0]["entries"]["pgd@0.2"][k] == rec["entries"]["pgd@0.2"][k], k
    rows = summarize_adversarial(again)
    assert [(r["attack"], r["epsilon_255"]) for r in rows][:2] == [("fgsm", 4.0), ("fgsm", 51.0)]
    assert render_adversarial(rows, "t").row_count == 4

    # Resuming under other settings is refused before anything is trained or overwritten.
    clf_file = (tmp_path / "classifier.json").read_text()
    other = (
        ({"pgd_steps": 5}, {}, "protocol"),
        ({"classifier_epochs": 3}, {}, "protocol"),
        ({}, {"variance": 0.5}, "settings"),
    )
    for change, hp, what in other:
        s2 = AdversarialSettings(**{**dataclasses.asdict(settings), **change})
        with pytest.raises(ValueError, match=f"other settings \\({what} differ"):
            run_adversarial("mnist", "pca", [3], tmp_path, s2, hparams=hp, log=print)
    assert (tmp_path / "classifier.json").read_text() == clf_file
    assert saved["settings"]["preset"] == "default" and saved["protocol"]["pgd_steps"] == 3
    # A saved detector without its record (a run stopped before the first entry) too.
    (tmp_path / "class3_seed0.json").unlink()
    with pytest.raises(ValueError, match="detector fitted with other settings"):
        run_adversarial("mnist", "pca", [3], tmp_path, settings, hparams={"variance": 0.5})


def test_cli_runs_the_protocol_in_both_fitting_modes(mnist_test, tmp_path, monkeypatch):
    """`reconad benchmark --protocol adversarial`: one-class and all-classes detectors, the
    table, summary.json; a changed setting on resume is a clear error, exit code 2."""
    from typer.testing import CliRunner

    from reconad.cli import app

    splits = {
        "train": mnist_test.subset(np.arange(800)),
        "test": mnist_test.subset(np.arange(8000, 8300)),
    }  # noqa: E501
    monkeypatch.setattr("reconad.data.datasets.load_dataset", lambda n, s, root=None: splits[s])
    base = ["benchmark", "--protocol", "adversarial", "--dataset", "mnist", "--method", "pca",
            "--classes", "1", "--attacks", "fgsm", "--epsilons", "8/255", "--classifier-epochs",
            "2", "--attack-backend", "torch", "--no-progress"]  # fmt: skip
    for fit_on in ("one-class", "all"):
        out = tmp_path / fit_on
        r = CliRunner().invoke(app, [*base, "--fit-on", fit_on, "--out", str(out)])
        assert r.exit_code == 0, r.output
        summary = json.loads((out / "summary.json").read_text())
        (row,) = summary["rows"]
        assert row["attack"] == "fgsm" and row["epsilon_255"] == 8.0
        assert 0 <= row["success_rate"] <= 100 and "auroc" in row
        name = "class1_seed0.json" if fit_on == "one-class" else "all_seed0.json"
        rec = json.loads((out / name).read_text())
        ones = int((splits["test"].labels == 1).sum())
        assert rec["fit_on"] == fit_on and rec["n_test"] == (300 if fit_on == "all" else ones)
    r = CliRunner().invoke(app, [*base, "--pgd-steps", "3", "--out", str(tmp_path / "one-class")])
    assert r.exit_code == 2 and "other settings" in r.output


def test_detectors_fitted_by_the_one_class_benchmark_are_reused(mnist_test, tmp_path, monkeypatch):
    """`--save-models` of the one-class protocol and the adversarial protocol's detector
    folder share a layout: a detector fitted there is loaded, not trained again, and one
    fitted with other settings is refused."""
    from reconad.detector import Detector
    from tests.test_benchmark import run_protocol

    splits = {
        "train": mnist_test.subset(np.arange(1200)),
        "test": mnist_test.subset(np.arange(5000, 5600)),
    }
    monkeypatch.setattr("reconad.data.datasets.load_dataset", lambda n, s, root=None: splits[s])
    models = tmp_path / "models"
    quiet = lambda *a: None  # noqa: E731
    run_protocol("mnist", "pca", [3], [0], tmp_path / "one", progress=False, log=quiet,
                 save_models=models)  # fmt: skip
    assert (models / "class3_seed0" / "config.json").exists()

    def must_not_fit(*a, **k):
        raise AssertionError("the saved detector was not used")

    monkeypatch.setattr(Detector, "fit", must_not_fit)
    settings = AdversarialSettings(
        dataset="mnist", attacks=("fgsm",), epsilons=(0.2,), backend="torch", classifier_epochs=10,
        classifier_width=8,
    )  # fmt: skip
    (rec,) = run_adversarial(
        "mnist", "pca", [3], tmp_path / "adv", settings, log=quiet, detectors=models
    )
    assert rec["detector_dir"] == str(models / "class3_seed0")
    assert not (tmp_path / "adv" / "detectors").exists()
    threes = splits["test"].images[splits["test"].labels == 3]
    assert rec["n_test"] == len(threes) and rec["n_correct"] > 0
    assert rec["entries"]["fgsm@0.2"]["auroc"] is not None
    with pytest.raises(ValueError, match="detector fitted with other settings"):
        run_adversarial("mnist", "pca", [3], tmp_path / "adv2", settings, log=quiet,
                        hparams={"variance": 0.5}, detectors=models)  # fmt: skip


def test_a_methods_other_scores_get_their_own_auroc_and_column():
    """DDR-ID's latent and image scores (``components``) are reported beside the fused one."""
    import time

    clean = {
        "scores": np.array([0.0, 1.0, 2.0]),
        "components": {"latent": np.array([0.0, 1.0, 2.0]), "image": np.array([5.0, 5.0, 5.0])},
    }
    adv = {
        "scores": np.array([3.0, 4.0, 0.5]),
        "components": {"latent": np.array([-1.0, -2.0, 9.0]), "image": np.array([6.0, 6.0, 0.0])},
    }
    fooled = np.array([True, True, False])  # only the first two count as adversarial
    x = np.zeros((3, 1, 4, 4), np.uint8)
    e = protocol_mod._entry("fgsm", 0.1, clean, adv, fooled, x, x, time.perf_counter())
    assert e["auroc"] == 100.0 and e["components"] == {"latent": 0.0, "image": 100.0}
    assert e["auroc_all_perturbed"] == pytest.approx(100 * 7 / 9)
    # paired: clean 0, 1 (the fooled ones' originals) against adversarial 3, 4
    assert e["auroc_paired"] == 100.0
    e2 = protocol_mod._entry("fgsm", 0.1, clean, adv, np.array([False, True, True]), x, x, 0.0)
    assert e2["auroc_paired"] == 50.0  # clean 1, 2 against adversarial 4, 0.5
    # latent paired: clean 0, 1 against -1, -2; image paired: 5, 5 against 6, 6
    assert e["components_paired"] == {"latent": 0.0, "image": 100.0}
    assert e2["components_paired"] == {"latent": 50.0, "image": 50.0}  # 1, 2 vs -2, 9; 5, 5 vs 6, 0
    assert e2["auroc"] == pytest.approx(100 * 4 / 6)  # all clean 0, 1, 2 against 4, 0.5
    rows = summarize_adversarial([{"entries": {"fgsm@0.1": e}}, {"entries": {"fgsm@0.1": e}}])
    assert rows[0]["components"] == {"image": 100.0, "latent": 0.0} and rows[0]["targets"] == 2
    headers = [c.header for c in render_adversarial(rows, "t").columns]
    assert headers[-4:] == [
        "AUROC image %",
        "AUROC image paired %",
        "AUROC latent %",
        "AUROC latent paired %",
    ]
    assert rows[0]["components_paired"] == {"image": 100.0, "latent": 0.0}

"""The offline demo on scikit-learn's digits writes a complete run folder."""

from __future__ import annotations

import json

import numpy as np

from reconad.demo import digits_split, run_demo


def test_digits_split_keeps_test_images_out_of_training():
    train, test, anomalous = digits_split(normal=3, seed=0)
    assert (train.labels == 3).all()
    assert anomalous.sum() == (test.labels != 3).sum() and (~anomalous).sum() > 0
    # No training image appears in the test set.
    t = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in t for img in test.images[test.labels == 3])


def test_demo_writes_model_metrics_and_figures(tmp_path):
    m = run_demo(tmp_path / "run", epochs_scale=0.3, progress=False, log=lambda *a: None)
    run = tmp_path / "run"
    for name in ("metrics.json", "roc.png", "grid.png", "model/config.json"):
        assert (run / name).exists(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["auroc"] == m["auroc"] and m["auroc"] > 90
    assert np.isfinite(saved["threshold"])
    assert saved["versions"]["torch"] and saved["seed"] == 0 and saved["peak_rss_mb"] > 0


def test_demo_settings_train_at_least_the_presets_steps():
    # The demo's epoch count on its 113 fitting images (fit holds out a tenth of the 125)
    # must plan as many optimiser steps as the preset does, or fit warns "undertrained".
    from reconad.demo import DEMO_HPARAMS
    from reconad.methods import get_method
    from reconad.training import plan_steps

    n_fit = 113
    for name, hp in DEMO_HPARAMS.items():
        cls = get_method(name)
        preset = next(iter(cls.presets))
        demo = cls(cls.make_config(preset, **hp), 1, (16, 16))
        reference = cls(cls.make_config(preset), 1, (16, 16))
        assert plan_steps(demo, n_fit, floor=False) >= plan_steps(reference, n_fit), name

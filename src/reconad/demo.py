"""The offline demo: a detector on scikit-learn's bundled handwritten digits.

scikit-learn ships 1,797 real 8x8 digit images (UCI optical digits), so the demo needs no
network and no data folder. One digit is normal; a seeded, stratified 70/30 split of every
digit gives training normals (70% of the normal digit) and a test set (30% of every digit),
so that test images are never seen in training.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from reconad.data.imageset import ImageSet
from reconad.detector import Detector, versions
from reconad.metrics import image_metrics
from reconad.protocols.provenance import git_commit, peak_rss_mb
from reconad.report import save_extras_grid, save_roc
from reconad.serialize import write_json


def digits_split(normal: int = 0, seed: int = 0) -> tuple[ImageSet, ImageSet, np.ndarray]:
    """Training normals, the test set and its anomaly labels from scikit-learn's digits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == c))
        cut = int(round(0.7 * len(idx)))
        if c == normal:
            train_idx.extend(idx[:cut])
        test_idx.extend(idx[cut:])
    names = [str(c) for c in range(10)]
    train = ImageSet(images[np.sort(train_idx)], d.target[np.sort(train_idx)], names)
    test = ImageSet(images[np.sort(test_idx)], d.target[np.sort(test_idx)], names)
    return train, test, (test.labels != normal)


DEMO_HPARAMS: dict[str, dict[str, Any]] = {
    # ~125 training images: small batches and more epochs than the 6,000-image default;
    # 160 epochs of 7 batches are 1,120 optimiser steps, at least the preset's 1,060 (at
    # 150 epochs fit warned that the run was 10 steps short).
    "ae": {"epochs": 160, "batch_size": 16, "lr": 1e-3},
    "ssim_ae": {"epochs": 160, "batch_size": 16, "lr": 1e-3},
}


def run_demo(
    out: Path,
    method: str = "ae",
    normal: int = 0,
    seed: int = 0,
    epochs_scale: float = 1.0,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Train, score, and write the run folder: model/, metrics.json, roc.png, grid.png."""
    out = Path(out)
    train, test, anomalous = digits_split(normal, seed)
    log(
        f"digits: {len(train)} training images of digit {normal}; test {len(test)} images "
        f"({int((~anomalous).sum())} normal, {int(anomalous.sum())} anomalous)"
    )
    det = Detector(
        method,
        seed=seed,
        progress=progress,
        epochs_scale=epochs_scale,
        hparams=DEMO_HPARAMS.get(method, {}),
    )
    t0 = time.perf_counter()
    det.fit(train)
    fit_s = time.perf_counter() - t0
    scores = det.score_samples(test)
    m = image_metrics(anomalous.astype(int), scores)
    pred = det.predict(test)
    metrics = {
        "method": method,
        "normal_digit": normal,
        "auroc": 100 * m["auroc"],
        "ap": 100 * m["ap"],
        "f1_max_oracle": 100 * m["f1_max"],
        "tpr_at_5fpr": 100 * m["tpr_at_5fpr"],
        "threshold": det.threshold_,
        "test_fpr_at_threshold": 100 * float(pred[~anomalous].mean()),
        "test_tpr_at_threshold": 100 * float(pred[anomalous].mean()),
        "fit_seconds": round(fit_s, 2),
        "n_train": det.n_train_,
        "n_test": len(test),
        "seed": seed,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "versions": versions(),
        "git_commit": git_commit(),
    }
    out.mkdir(parents=True, exist_ok=True)
    det.save(out / "model")
    write_json(out / "metrics.json", metrics)
    save_roc(
        anomalous.astype(int), scores, out / "roc.png", f"{method} on digits (normal {normal})"
    )
    if det.method_.produces_maps:
        # Four normal and four anomalous test images, with what the model made of them.
        pick = np.concatenate([np.flatnonzero(~anomalous)[:4], np.flatnonzero(anomalous)[:4]])
        ex = det.explain(test.subset(pick))
        save_extras_grid(
            ex["extras"],
            out / "grid.png",
            scores=ex["scores"],
            labels=[
                ("normal " if not anomalous[i] else "anomal. ") + str(test.labels[i]) for i in pick
            ],
        )
    return metrics

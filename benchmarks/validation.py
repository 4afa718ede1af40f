"""Choose hyper-parameters without the test split: a validation protocol on training data.

For normal class c, the official *training* split is divided into: training images of c
(minus a held-out 20%), held-out images of c (validation normals), and a sample of other
classes' training images (validation anomalies). The official test split is never read, so
a setting chosen here has not seen a test label. Used to pick the cpu presets.

    python benchmarks/validation.py --dataset fmnist --method arnet --classes 0,6 \
        --set epochs=15 --set lr=0.001
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from reconad.cli.common import parse_set
from reconad.data.datasets import load_dataset
from reconad.data.protocol import holdout_split, parse_classes
from reconad.detector import Detector
from reconad.metrics import image_auroc


def validation_auroc(
    dataset, method, c, hparams, preset=None, seed=0, n_anomalies=2000, root="../shared/data"
) -> dict:
    train = load_dataset(dataset, "train", root=root)
    normal = train.subset(train.labels == c)
    fit, val = holdout_split(normal, 0.2, seed)
    others = np.flatnonzero(train.labels != c)
    pick = np.random.default_rng(seed).choice(others, n_anomalies, replace=False)
    anomalies = train.subset(np.sort(pick))
    det = Detector(
        method, preset=preset, seed=seed, progress=False, val_fraction=0.1, hparams=hparams
    )
    t0 = time.perf_counter()
    det.fit(fit)
    fit_s = time.perf_counter() - t0
    s_norm, s_anom = det.score_samples(val), det.score_samples(anomalies)
    labels = np.r_[np.zeros(len(s_norm)), np.ones(len(s_anom))]
    return {
        "class": c,
        "val_auroc": 100 * image_auroc(labels, np.r_[s_norm, s_anom]),
        "fit_seconds": round(fit_s, 1),
        "hparams": hparams,
        "preset": preset,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--classes", default="0")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--set", dest="set_", action="append")
    ap.add_argument("--data-root", default="../shared/data")
    args = ap.parse_args()
    hp = parse_set(args.set_)
    for c in parse_classes(args.classes, 100):
        r = validation_auroc(args.dataset, args.method, c, hp, args.preset, root=args.data_root)
        print(json.dumps({"dataset": args.dataset, "method": args.method, **r}), flush=True)


if __name__ == "__main__":
    main()

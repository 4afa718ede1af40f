"""Does a method's real training loop run faster channels-last? (A/B on the same data.)

Fits the method on class 0 of a data set through ``Detector.fit`` (the benchmark's path:
Fabric, the shared loop, calibration), once channels-first and once channels-last, one after
the other, and prints each stage's training images per second and the last losses (which
should agree to a few digits: the layout changes the order of sums, not the maths).

    python benchmarks/training_layout.py --method arnet --dataset cifar10 --epochs-scale 0.2

Run it with nothing beside it: two processes on 2 cores slow each other down several-fold.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reconad.data.datasets import load_dataset
from reconad.detector import Detector
from reconad.methods import get_method


def fit_rate(method: str, images: np.ndarray, scale: float, channels_last: bool) -> str:
    """One fit; a line with each stage's images per second."""
    cls = get_method(method)
    saved = cls.channels_last
    cls.channels_last = channels_last
    try:
        det = Detector(method, epochs_scale=scale, progress=False)
        t0 = time.perf_counter()
        det.fit(images)
        total = time.perf_counter() - t0
    finally:
        cls.channels_last = saved
    n = len(images) - int(round(len(images) * det.val_fraction))
    per: dict[str, list[float]] = {}
    for h in det.history_:
        per.setdefault(h["stage"], []).append(h["seconds"])
    rates = ", ".join(f"{k} {n * len(v) / sum(v):.0f} img/s" for k, v in per.items())
    losses = ", ".join(f"{h['loss']:.5g}" for h in det.history_[-2:])
    layout = "channels-last " if channels_last else "channels-first"
    return f"{layout}: {rates}; fit {total:.1f} s; last losses {losses}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="arnet")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--normal", type=int, default=0)
    ap.add_argument("--epochs-scale", type=float, default=0.2, help="a share of the preset's")
    ap.add_argument("--data-root", default="../shared/data")
    args = ap.parse_args()
    train = load_dataset(args.dataset, "train", args.data_root, download=False)
    images = train.images[np.asarray(train.labels) == args.normal]
    print(f"{args.method} on {args.dataset} class {args.normal}: {len(images)} images")
    for channels_last in (False, True):
        print(fit_rate(args.method, images, args.epochs_scale, channels_last))


if __name__ == "__main__":
    main()

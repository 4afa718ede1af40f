"""The conformal guarantee measured on real normal images, against the plain threshold.

For each data set a pca detector is fitted on normal training images; the scores of normal
images it never saw form a pool, the scores of anomalous images another. Over 200 random
splits of the normal pool into a calibration set (``--n-cal`` images, the held-out normals a
model keeps) and a test set, two rules are applied at 5%: flag p <= 0.05 (conformal
p-values), and flag scores above ``threshold_at_fpr`` of the calibration set (what `fit`
sets). The table gives each rule's false-alarm rate on the normal test images (mean with its
standard error, and 95th percentile over splits) and its detection rate on the anomalous ones.
With 100 calibration images the conformal rule's expected rate is floor(0.05 * 101) / 101 =
4.95% when the pool is exchangeable (MNIST: test ones only); the Magnetic-Tile pool mixes
held-out training normals with the test split's good images, which need not be.

    python benchmarks/conformal_guarantee.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reconad import Detector
from reconad.calibration import threshold_at_fpr
from reconad.conformal import p_values


def mnist_pools(root: str) -> tuple[str, np.ndarray, np.ndarray]:
    from reconad.data.datasets import load_dataset

    train = load_dataset("mnist", "train", root=root, download=False)
    test = load_dataset("mnist", "test", root=root, download=False)
    det = Detector("pca", val_fraction=0, progress=False)
    det.fit(train.subset(np.flatnonzero(train.labels == 1)))
    normal = det.score_samples(test.subset(np.flatnonzero(test.labels == 1)))
    anomalous = det.score_samples(test.subset(np.flatnonzero(test.labels != 1)[:2000]))
    return "MNIST, digit 1 normal (pca, 28x28)", normal, anomalous


def tile_pools(root: str) -> tuple[str, np.ndarray, np.ndarray]:
    from pathlib import Path

    from reconad.data.folders import read_mvtec
    from reconad.data.protocol import holdout_split

    path = Path(root) / "magnetic-tile"
    train = read_mvtec(path, "train", size=(128, 128), channels=1)
    test = read_mvtec(path, "test", size=(128, 128), channels=1)
    fit, held = holdout_split(train, 0.3, 0)  # normals never fitted: held out + test good
    det = Detector("pca", val_fraction=0, progress=False).fit(fit)
    good = test.class_names.index("good")
    normal = np.r_[
        det.score_samples(held), det.score_samples(test.subset(np.flatnonzero(test.labels == good)))
    ]
    anomalous = det.score_samples(test.subset(np.flatnonzero(test.labels != good)))
    return "Magnetic-Tile, good normal (pca, 128x128)", normal, anomalous


def measure(normal: np.ndarray, anomalous: np.ndarray, n_cal: int, alpha: float, splits: int):
    rng = np.random.default_rng(0)
    rows = {"p <= alpha": ([], []), "threshold at FPR alpha": ([], [])}
    for _ in range(splits):
        perm = rng.permutation(len(normal))
        cal, test = normal[perm[:n_cal]], normal[perm[n_cal:]]
        rows["p <= alpha"][0].append((p_values(cal, test) <= alpha).mean())
        rows["p <= alpha"][1].append((p_values(cal, anomalous) <= alpha).mean())
        t = threshold_at_fpr(cal, alpha)
        rows["threshold at FPR alpha"][0].append((test > t).mean())
        rows["threshold at FPR alpha"][1].append((anomalous > t).mean())
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--n-cal", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--splits", type=int, default=200)
    args = ap.parse_args()
    print(f"alpha {args.alpha}, {args.splits} random splits, {args.n_cal} calibration normals")
    print("| data | rule | false alarms, mean ± s.e. | false alarms, 95th pct | detection, mean |")
    print("|---|---|---|---|---|")
    for pools in (mnist_pools, tile_pools):
        t0 = time.perf_counter()
        name, normal, anomalous = pools(args.data_root)
        for rule, (far, tpr) in measure(
            normal, anomalous, args.n_cal, args.alpha, args.splits
        ).items():
            print(
                f"| {name} ({len(normal)} normal, {len(anomalous)} anomalous) | {rule} | "
                f"{100 * np.mean(far):.2f}% ± {100 * np.std(far) / np.sqrt(len(far)):.2f} | "
                f"{100 * np.percentile(far, 95):.2f}% | "
                f"{100 * np.mean(tpr):.1f}% |"
            )
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->")


if __name__ == "__main__":
    main()

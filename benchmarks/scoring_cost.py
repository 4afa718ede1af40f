"""What each scoring variant costs at test time, on a detector the benchmark kept.

The multi-view variants of issue 5's ablation reuse the plain AE's trained networks
(``reconad benchmark --also-score``), so their "wall time" is a scoring cost, not a training
one. This times, on one class's full one-class test split, the method's own score and each
variant (fitting the variant's standardisation on the held-out normals included), and prints
a table: seconds and test images per second.

    python benchmarks/scoring_cost.py --dataset fmnist --models ../models/fmnist-ae --normal 0

The detectors come from ``reconad benchmark --save-models DIR`` (``DIR/class{C}_seed{S}``).
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from reconad.data.datasets import load_dataset
from reconad.data.protocol import one_class_split
from reconad.detector import Detector
from reconad.scoring import ScoringSpec

VARIANTS = ("native", "multiview", "multiview+entropy", "multiview+entropy-subtract")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fmnist")
    ap.add_argument("--models", required=True, help="the --save-models folder of a benchmark")
    ap.add_argument("--normal", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()

    det = Detector.load(f"{args.models}/class{args.normal}_seed{args.seed}")
    det.progress = False
    train = load_dataset(args.dataset, "train", args.data_root, download=False)
    test = load_dataset(args.dataset, "test", args.data_root, download=False)
    split = one_class_split(train, test, args.normal, det.val_fraction, args.seed)
    n = len(split.test)
    det.score_samples(split.test.images[:256])  # warm-up
    t = Table(
        title=f"{det.method} on {args.dataset} class {args.normal}: scoring {n:,} test images "
        f"(CPU, {torch.get_num_threads()} threads)"
    )
    for col in ("variant", "seconds", "images/s"):
        t.add_column(col, justify="right")
    for tag in args.variants.split(","):
        spec = ScoringSpec.parse(tag)
        t0 = time.perf_counter()
        det.score_variant(
            split.test.images, split.val.images, spec.score, spec.difficulty, spec.mode
        )
        sec = time.perf_counter() - t0
        t.add_row(tag, f"{sec:.1f}", f"{n / sec:.0f}")
    Console().print(t)


if __name__ == "__main__":
    main()

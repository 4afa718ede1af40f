"""One PNG grid for the README: a saved model's restorations and maps of chosen test images.

One row per image: the method's intermediate images (input, restoration, map, ...) and the
map over the input; the left margin gives the defect type and the image score, and the
title the threshold set on held-out normals. Every image is scored by the saved model as
`reconad predict` would (the model's own size, tiles and normalisation).

    python benchmarks/heatmap_grid.py --model ../models/mt-draem/seed0 \
        --out docs/figures/draem-magnetic-tile.png \
        ../shared/data/magnetic-tile/test/blowhole/exp1_num_108719.jpg ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reconad import Detector
from reconad.report import save_extras_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path, help="test images, one row each")
    ap.add_argument("--model", type=Path, required=True, help="a model folder from fit")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = ap.parse_args()
    det = Detector.load(args.model)
    ex = det.explain([str(p) for p in args.images], n=len(args.images))
    if not ex["extras"]:
        raise SystemExit(f"{det.method} keeps no intermediate images to draw")
    labels = [p.parent.name for p in args.images]  # the defect type's folder
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_extras_grid(
        ex["extras"],
        args.out,
        scores=ex["scores"],
        labels=labels,
        n=len(args.images),
        overlay=ex["maps"],
    )
    print(f"{args.out}: {det.method}, threshold {det.threshold_:.4g}")
    for p, s in zip(args.images, ex["scores"], strict=True):
        verdict = "anomalous" if s > det.threshold_ else "normal"
        print(f"  {s:10.4g}  {verdict:9s}  {p}")


if __name__ == "__main__":
    main()

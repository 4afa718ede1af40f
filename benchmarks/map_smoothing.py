"""Map smoothing on a saved industrial model: the width chosen without test labels, and
what it does to the pixel metrics (scoring only, no training).

The model is one that ``reconad benchmark --save-models DIR`` kept (``DIR/seed<s>``). Its
held-out normals are rebuilt as the protocol drew them (``holdout_split(train, 0.1, seed)``;
their count is checked against the model's), the width is chosen on them with synthetic
defects (``Detector.map_sigma_choice``), and the test set is scored with maps unsmoothed
and smoothed by the chosen width. ``--every`` also scores every candidate width: an
ablation to read, not to choose by (the choice is the probe's).

    python benchmarks/map_smoothing.py --model ../models/mt-ae-normalize/seed2 \\
        --dataset magnetic-tile --data-root ../shared/data --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reconad import Detector
from reconad.data.folders import read_mvtec
from reconad.data.protocol import holdout_split
from reconad.evaluate import evaluate
from reconad.protocols.industrial import resolve_category
from reconad.score_choice import SIGMAS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="a saved model folder")
    ap.add_argument("--dataset", required=True, help="magnetic-tile, mvtec/screw, or a folder")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--val-fraction", type=float, default=0.1, help="as in the benchmark run")
    ap.add_argument("--every", action="store_true", help="also score every candidate width")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args()

    det = Detector.load(args.model)
    _, path = resolve_category(args.dataset, args.data_root)
    channels = det.input_shape_[0]
    train = read_mvtec(path, "train", size=det.read_size_, channels=channels)
    test = read_mvtec(path, "test", size=det.read_size_, channels=channels)
    _, val = holdout_split(train, args.val_fraction, det.seed)
    n_val = json.loads((args.model / "config.json").read_text())["calibration"]["n_val"]
    if len(val) != n_val:
        raise SystemExit(
            f"{len(val)} held-out images here, {n_val} in the model: pass the run's --val-fraction"
        )
    t0 = time.perf_counter()
    choice = det.map_sigma_choice(val)
    probe_s = time.perf_counter() - t0
    widths = sorted({0.0, choice.sigma, *(SIGMAS if args.every else ())})
    rows = []
    for sigma in widths:
        det.map_sigma_ = sigma
        res = evaluate(det, test)
        rows.append(
            {
                "sigma": sigma,
                "chosen": sigma == choice.sigma,
                "pixel_auroc": res.get("pixel_auroc"),
                "aupro": res.get("aupro"),
                "probe_pixel_auroc": 100 * choice.aurocs[sigma] if sigma in choice.aurocs else None,
            }
        )
    print(f"{args.model} on {args.dataset}: probe strength {choice.strength}, {probe_s:.1f} s")
    print("| sigma (px) | probe pixel AUROC (synthetic) | test pixel AUROC | test AUPRO |")
    print("|---|---|---|---|")
    for r in rows:
        mark = " (chosen)" if r["chosen"] else ""
        probe = "" if r["probe_pixel_auroc"] is None else f"{r['probe_pixel_auroc']:.1f}"
        print(f"| {r['sigma']:g}{mark} | {probe} | {r['pixel_auroc']:.1f} | {r['aupro']:.1f} |")
    if args.json:
        out = {
            "model": str(args.model),
            "dataset": args.dataset,
            "chosen_sigma": choice.sigma,
            "probe_aurocs": {f"{k:g}": v for k, v in choice.aurocs.items()},
            "probe_strength": choice.strength,
            "probe_seconds": round(probe_s, 1),
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""How strongly does a plain autoencoder's error follow image entropy, and how much of that
does difficulty normalisation remove? (METHODS.md section 4, the thesis's premise.)

Trains a method (default the plain ``ae``) on one normal class of the official training
split (the one-class protocol's training images, minus 10% held out), then on the *normal*
images of the test split correlates each score variant with the image's gray-level entropy
(Pearson and Spearman), and with the variant's own difficulty measure. Normalisations and
standardisation are fitted on the held-out training normals only. The AUROC of each variant
on the whole test split is printed beside it (test labels are read only by the metric).

    OMP_NUM_THREADS=1 python benchmarks/entropy_correlation.py --dataset fmnist --normal 0 \
        --epochs 10 --json benchmarks/results/entropy_correlation_fmnist0.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from scipy.stats import pearsonr, spearmanr

from reconad.data.datasets import load_dataset
from reconad.data.protocol import one_class_split
from reconad.detector import Detector
from reconad.inputs import resize_uint8
from reconad.metrics import image_auroc
from reconad.scoring import MULTIVIEW, ScoreFusion, compute_views, difficulty
from reconad.serialize import write_json

MEASURES = ("entropy", "bpp", "gradient")


def all_views(det: Detector, images: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """Native score, the three multi-view views and the three difficulties of uint8 images."""
    method = det.method_.eval()
    c, h, w = det.input_shape_
    images = resize_uint8(images, (h, w))
    out: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).float() / 255.0
            for k, v in compute_views(method, x, ("native", *MULTIVIEW)).items():
                out.setdefault(k, []).append(v.numpy())
            for m in MEASURES:
                out.setdefault(m, []).append(difficulty(x, m).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def variant(val: dict, test: dict, views: tuple[str, ...], measure: str, mode: str) -> np.ndarray:
    """Fit a fusion on held-out normals, score the test images."""
    fusion = ScoreFusion(views, measure, mode)
    pick = lambda d: {**d, "difficulty": d[measure]} if measure != "none" else d  # noqa: E731
    return fusion.fit(pick(val)).transform(pick(test))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fmnist")
    ap.add_argument("--normal", type=int, default=0)
    ap.add_argument("--method", default="ae")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--epochs", type=int, default=None, help="override the method's epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args()

    train = load_dataset(args.dataset, "train", root=args.data_root)
    test = load_dataset(args.dataset, "test", root=args.data_root)
    split = one_class_split(train, test, args.normal, val_fraction=0.1, seed=args.seed)
    hp = {} if args.epochs is None else {"epochs": args.epochs}
    det = Detector(args.method, preset=args.preset, seed=args.seed, progress=False, **hp)
    t0 = time.perf_counter()
    det.fit(split.train, validation=split.val)
    fit_s = time.perf_counter() - t0
    val = all_views(det, split.val.images)
    tst = all_views(det, split.test.images)
    normal = ~split.test_anomalous
    labels = split.test_anomalous.astype(int)

    rows = []
    for views, vname in ((("native",), "native"), (MULTIVIEW, "multiview")):
        for measure in ("none", *MEASURES):
            for mode in ("divide", "subtract") if measure != "none" else ("-",):
                s = variant(val, tst, views, measure, mode if mode != "-" else "divide")
                ent = tst["entropy"][normal]
                own = tst[measure][normal] if measure != "none" else ent
                rows.append(
                    {
                        "score": vname,
                        "difficulty": measure,
                        "mode": mode,
                        "pearson_entropy": float(pearsonr(s[normal], ent)[0]),
                        "spearman_entropy": float(spearmanr(s[normal], ent)[0]),
                        "spearman_own": float(spearmanr(s[normal], own)[0]),
                        "auroc": 100 * image_auroc(labels, s),
                    }
                )
    raw = {
        f"{v} vs {m}": float(spearmanr(tst[v][normal], tst[m][normal])[0])
        for v in ("native", *MULTIVIEW)
        for m in MEASURES
    }

    con = Console()
    title = (
        f"{args.method} on {args.dataset} class {args.normal}: scores vs. difficulty on "
        f"{int(normal.sum())} normal test images (fit {fit_s:.0f} s)"
    )
    t = Table(title=title)
    for col in ("score", "difficulty", "mode", "r entropy", "rho entropy", "rho own D", "AUROC"):
        t.add_column(col, justify="right" if col[0] in "rA" else "left")
    for r in rows:
        t.add_row(
            r["score"],
            r["difficulty"],
            r["mode"],
            f"{r['pearson_entropy']:+.3f}",
            f"{r['spearman_entropy']:+.3f}",
            f"{r['spearman_own']:+.3f}",
            f"{r['auroc']:.2f}",
        )
    con.print(t)
    con.print("Spearman of raw views vs. each measure:", {k: round(v, 3) for k, v in raw.items()})
    if args.json:
        write_json(
            args.json,
            {
                "args": vars(args),
                "fit_seconds": round(fit_s, 1),
                "n_normal_test": int(normal.sum()),
                "rows": rows,
                "raw_spearman": raw,
            },
        )


if __name__ == "__main__":
    main()

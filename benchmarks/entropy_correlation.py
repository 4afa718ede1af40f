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

With ``--models DIR`` it trains nothing and loads the detectors that ``reconad benchmark
--save-models DIR`` kept (``DIR/class{C}_seed{S}``), so the numbers describe the very
networks of the benchmark table; ``--normal 0-9`` adds a summary over the classes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from scipy.stats import pearsonr, spearmanr

from reconad.data.datasets import load_dataset
from reconad.data.protocol import one_class_split, parse_classes
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


def analyse(det: Detector, split) -> dict:
    """Every score variant's correlation with difficulty on the normal test images."""
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
    return {"n_normal_test": int(normal.sum()), "rows": rows, "raw_spearman": raw}


def class_table(title: str, rows: list[dict]) -> Table:
    """One class: every variant's correlations and AUROC."""
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
    return t


SUMMARY = (
    ("native", "none", "-"),
    ("native", "entropy", "divide"),
    ("native", "entropy", "subtract"),
    ("multiview", "none", "-"),
    ("multiview", "entropy", "divide"),
    ("multiview", "entropy", "subtract"),
)


def summary_table(title: str, per_class: dict[int, dict]) -> Table:
    """Several classes: Spearman with entropy (and AUROC) of the main variants, and the mean."""
    t = Table(title=title)
    t.add_column("class")
    for v in SUMMARY:
        t.add_column(" ".join(x for x in v if x not in ("none", "-")), justify="right")

    def cells(res):
        pick = {(r["score"], r["difficulty"], r["mode"]): r for r in res["rows"]}
        return [pick[v] for v in SUMMARY]

    for c, res in per_class.items():
        t.add_row(str(c), *(f"{r['spearman_entropy']:+.3f} ({r['auroc']:.1f})" for r in cells(res)))
    cols = list(zip(*(cells(res) for res in per_class.values()), strict=True))
    t.add_row(
        "mean",
        *(
            f"{np.mean([r['spearman_entropy'] for r in col]):+.3f} "
            f"({np.mean([r['auroc'] for r in col]):.1f})"
            for col in cols
        ),
    )
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fmnist")
    ap.add_argument("--normal", default="0", help="normal class(es), e.g. 0 or 0-9")
    ap.add_argument("--method", default="ae")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--epochs", type=int, default=None, help="override the method's epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument(
        "--models",
        default=None,
        help="instead of training, load DIR/class{C}_seed{S} (reconad benchmark --save-models)",
    )
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args()

    train = load_dataset(args.dataset, "train", root=args.data_root)
    test = load_dataset(args.dataset, "test", root=args.data_root)
    con = Console()
    per_class: dict[int, dict] = {}
    for c in parse_classes(args.normal, len(train.class_names or range(10))):
        # the benchmark's split: same seed, same 10% held out, so a saved model sees the
        # held-out normals it was calibrated on
        split = one_class_split(train, test, c, val_fraction=0.1, seed=args.seed)
        t0 = time.perf_counter()
        if args.models:
            det = Detector.load(Path(args.models) / f"class{c}_seed{args.seed}")
            if det.method != args.method:
                raise SystemExit(f"{args.models}: a {det.method} model, not {args.method}")
        else:
            hp = {} if args.epochs is None else {"epochs": args.epochs}
            det = Detector(
                args.method, preset=args.preset, seed=args.seed, progress=False, hparams=hp
            )
            det.fit(split.train, validation=split.val)
        res = {"fit_seconds": round(time.perf_counter() - t0, 1), **analyse(det, split)}
        per_class[c] = res
        title = (
            f"{args.method} on {args.dataset} class {c}: scores vs. difficulty on "
            f"{res['n_normal_test']} normal test images "
            f"({'loaded' if args.models else 'fit'} in {res['fit_seconds']:.0f} s)"
        )
        con.print(class_table(title, res["rows"]))
        raw = {k: round(v, 3) for k, v in res["raw_spearman"].items()}
        con.print("Spearman of raw views vs. each measure:", raw)
    if len(per_class) > 1:
        title = (
            f"{args.method} on {args.dataset}: Spearman with entropy on normal test images (AUROC)"
        )
        con.print(summary_table(title, per_class))
    if args.json:
        if len(per_class) == 1:  # one class: the same layout as before --normal took a range
            out = {"args": vars(args), **next(iter(per_class.values()))}
        else:
            out = {"args": vars(args), "classes": {str(k): v for k, v in per_class.items()}}
        write_json(args.json, out)


if __name__ == "__main__":
    main()

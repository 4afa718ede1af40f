"""Which term of UTAD's anomaly map carries the signal? A diagnostic for a saved UTAD model.

UTAD's map is ``e = max(0, r(x, x_hat) + r(x, mean m_hat) - Var - r(x_hat, m))``. This script
scores an MVTec-style test set with a saved detector (``reconad benchmark ... --save-models``
or ``reconad fit``) and reports, for each term alone, for the map, and for two simpler
residuals the same networks give (the impression's own residual ``r(x, m)``, as a plain SSIM
autoencoder would score, and ``r(x, x_hat)``), and for the map under the official script's
arithmetic (``var_weight=255``, ``ssim_range=2``, ``match_range``: same weights, scoring only),
the image AUROC (max of the smoothed map and mean of the map), the pixel AUROC and AUPRO at
each mask's own size. Test labels are read only by the metrics; nothing here feeds back into
a model, and no variant is chosen on these numbers.

    python benchmarks/utad_terms.py --model /path/to/models/seed0 \
        --data ../shared/data/magnetic-tile [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from reconad.data.folders import read_mvtec
from reconad.detector import Detector, resize_maps
from reconad.evaluate import industrial_metrics
from reconad.methods.utad.losses import residual, smoothed_max, to_gray

#: scoring variants of the official script's arithmetic (UTADConfig fields), same weights
VARIANTS = {
    "var_weight=255": {"var_weight": 255.0},
    "ssim_range=2": {"ssim_range": 2.0},
    "match_range": {"match_range": True},
    "all three": {"var_weight": 255.0, "ssim_range": 2.0, "match_range": True},
}


def variant_maps(method, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The map under each scoring variant (the config is restored afterwards)."""
    out, cfg = {}, method.config
    for name, kw in VARIANTS.items():
        old = {k: getattr(cfg, k) for k in kw}
        try:
            for k, v in kw.items():
                setattr(cfg, k, v)
            out[f"map ({name})"] = method._explain(x)["map"]
        finally:
            for k, v in old.items():
                setattr(cfg, k, v)
    return out


def term_maps(method, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every term of the map for a batch ``x`` in [0, 1]; each ``(B, 1, H, W)``."""
    parts = method._explain(x)
    m, x_hat, naive = parts["impression"], parts["reconstruction"], parts["naive_impression"]
    e = method.expert
    c_m = e.impression.content(m * 2 - 1)
    samples = torch.stack(
        [to_gray((e.image.decode(c_m, s.expand(len(x), -1)) + 1) / 2) for s in method.detail_codes]
    )
    var = samples.var(0, unbiased=False)
    return {
        "map (UTAD)": parts["map"],
        "r(x, x_hat)": residual(x, x_hat),
        "r(x, mean m_hat)": residual(x, naive),
        "r(x_hat, m)": residual(x_hat, m),
        "Var": var,
        "r(x, m) (impression alone)": residual(x, m),
        "r(x, x_hat) + r(x, m_hat)": residual(x, x_hat) + residual(x, naive),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="an MVTec-style category folder")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default=None, help="write the table here as JSON")
    ap.add_argument("--no-variants", action="store_true", help="skip the scoring variants")
    a = ap.parse_args()
    det = Detector.load(a.model)
    method = det.method_.eval()
    c, h, w = det.input_shape_
    test = read_mvtec(a.data, "test", size=(h, w), channels=c)
    x_all = det._prepare(test)
    t0 = time.perf_counter()
    maps: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for i in range(0, len(x_all), a.batch):
            x = torch.from_numpy(x_all[i : i + a.batch]).float() / 255.0
            terms = term_maps(method, x)
            if not a.no_variants:
                terms.update(variant_maps(method, x))
            for k, v in terms.items():
                maps.setdefault(k, []).append(v[:, 0].numpy())
    t_score = time.perf_counter() - t0
    sigma = method.config.score_sigma * min(h, w) / 256.0
    rows = []
    for name, parts in maps.items():
        arr = np.concatenate(parts)
        t = torch.from_numpy(arr)[:, None]
        smax = smoothed_max(t, sigma).numpy()
        res = industrial_metrics(test, smax, resize_maps(arr, test.orig_sizes))
        mean_auroc = industrial_metrics(test, arr.reshape(len(arr), -1).mean(1), None)["auroc"]
        rows.append(
            {
                "term": name,
                "image_auroc_max": res["auroc"],
                "image_auroc_mean": mean_auroc,
                "pixel_auroc": res["pixel_auroc"],
                "aupro": res["aupro"],
                "per_type": res["auroc_per_type"],
            }
        )
    table = Table(title=f"UTAD map terms, {a.model} ({t_score:.0f} s to score)")
    for col in ("term", "image AUROC (max)", "image AUROC (mean)", "pixel AUROC", "AUPRO"):
        table.add_column(col)
    cols = ("image_auroc_max", "image_auroc_mean", "pixel_auroc", "aupro")
    for r in rows:
        table.add_row(r["term"], *(f"{r[k]:.1f}" for k in cols))
    Console().print(table)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "data": a.data, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

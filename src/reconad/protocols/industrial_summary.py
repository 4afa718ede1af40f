"""Summary over seeds of the industrial protocol: mean and std per metric, files, a table.

One row per metric (image AUROC, pixel AUROC, AUPRO, AP, the image AUROC of each defect
type and of each alternative score a method offers, then wall times and peak memory), with
the mean and the standard deviation over seeds (population std, as the one-class summary)
and each seed's value. A metric that no seed has (pixel metrics of a method without maps)
stays blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reconad.protocols.engine import fmt, mean_cell
from reconad.serialize import write_csv, write_json

#: (record key, label) of the headline metrics, in table order
METRICS = [
    ("auroc", "image AUROC %"),
    ("pixel_auroc", "pixel AUROC %"),
    ("aupro", "AUPRO % (FPR 0.3)"),
    ("ap", "image AP %"),
]
COSTS = [
    ("steps", "optimiser steps"),
    ("images_seen", "images drawn"),
    ("fit_seconds", "fit s"),
    ("score_seconds", "score s (test set)"),
    ("peak_rss_mb", "peak RSS MiB (fit + score)"),
    ("peak_rss_mb_with_metrics", "peak RSS MiB (+ metrics)"),
]


def _row(
    key: str, label: str, records: list[dict[str, Any]], field: str, sub: str | None = None
) -> dict[str, Any]:
    """Each seed's ``record[field]`` (or ``record[field][sub]``), and the mean and std of
    those that are numbers (the chosen score's row names a score per seed)."""
    per_seed = {r["seed"]: r.get(field) for r in records}
    if sub is not None:
        per_seed = {seed: (v or {}).get(sub) for seed, v in per_seed.items()}
    vals = np.array([v for v in per_seed.values() if isinstance(v, int | float)], dtype=float)
    return {
        "metric": key,
        "label": label,
        "mean": float(vals.mean()) if len(vals) else None,
        "std": float(vals.std()) if len(vals) else None,
        "n_seeds": int(len(vals)),
        "per_seed": per_seed,
    }


def summarize_industrial(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of every metric, per-type AUROC, times and memory."""
    if not records:
        return {"rows": [], "seeds": []}
    rows = [_row(k, lbl, records, k) for k, lbl in METRICS]
    if any((r.get("image_score_choice") or {}).get("chosen") for r in records):  # map methods
        label = "image AUROC %, score chosen on synthetic defects"
        rows.insert(1, _row("auroc_chosen", label, records, "auroc_chosen"))
        label = "  (the score chosen)"
        rows.insert(2, _row("image_score_chosen", label, records, "image_score_choice", "chosen"))
    for t in sorted({t for r in records for t in r.get("auroc_per_type", {})}):
        label = f"  image AUROC % {t}"
        rows.append(_row(f"auroc[{t}]", label, records, "auroc_per_type", t))
    for c in sorted({c for r in records for c in r.get("components", {})}):
        label = f"image AUROC % of score {c}"
        rows.append(_row(f"component[{c}]", label, records, "components", c))
    rows += [_row(k, lbl, records, k) for k, lbl in COSTS]
    first = records[0]
    return {
        "dataset": first["dataset"],
        "method": first["method"],
        "preset": first.get("preset"),
        "input": first.get("input"),
        "settings": first.get("settings"),
        "seeds": [r["seed"] for r in records],
        "n_test": first.get("n_test"),
        "n_per_type": first.get("n_per_type"),
        "rows": rows,
        "versions": records[-1].get("versions"),
        "git_commit": records[-1].get("git_commit"),
    }


def write_industrial_summary(summary: dict[str, Any], out_dir: str | Path) -> None:
    """Write ``summary.json`` and ``summary.csv`` (a row per metric, a column per seed)."""
    out_dir = Path(out_dir)
    write_json(out_dir / "summary.json", summary)
    seeds = summary["seeds"]
    fields = ["metric", "mean", "std", "n_seeds", *(f"seed{s}" for s in seeds)]
    rows = [
        {**row, **{f"seed{s}": row["per_seed"].get(s) for s in seeds}} for row in summary["rows"]
    ]
    write_csv(out_dir / "summary.csv", fields, rows)


def render_industrial_table(summary: dict[str, Any]):
    """A rich Table: metric, mean ± std over seeds, then one column per seed."""
    from rich.table import Table

    inp = summary.get("input") or {}
    title = (
        f"{summary.get('method')} on {summary.get('dataset')} (preset {summary.get('preset')}, "
        f"input {inp.get('channels')}x{inp.get('height')}x{inp.get('width')})"
    )
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("mean ± std", justify="right")
    for s in summary["seeds"]:
        t.add_column(f"seed {s}", justify="right")
    for row in summary["rows"]:
        mean = mean_cell(row["mean"], row["std"], row["n_seeds"])
        style = "bold" if row["metric"] in ("auroc", "pixel_auroc", "aupro") else None
        cells = [fmt(row["per_seed"].get(s)) for s in summary["seeds"]]
        t.add_row(row["label"], mean, *cells, style=style)
    return t

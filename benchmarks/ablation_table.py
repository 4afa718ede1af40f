"""Issue 5's ablation table from the one-class runs that scoring_ablation.sh makes.

Per variant: mean AUROC over the classes (and its std over seeds, when there are several),
the total fit and scoring wall time, each alternative score's
mean (e.g. rotnet_ae's ``coarse``: the score without refinement), the classes covered, the
total fit time and the number of runs; ARNet's published mean (the goal) beside them. The table is
built from the per-class result files, not from ``summary.json``, so a run still under way
(or stopped between classes) shows what it has finished, and says how many classes that is.

    python benchmarks/ablation_table.py fmnist [benchmarks/results]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from entropy_correlation import SUMMARY as CORRELATED  # the script beside this one

from reconad.protocols.one_class import collect_records
from reconad.protocols.one_class_summary import summarize
from reconad.reference import published_auroc

VARIANTS = [
    ("ae", "plain AE, MSE"),
    ("ae+multiview", "AE, multiview"),
    ("ae+multiview+entropy", "AE, multiview, entropy (divide)"),
    ("ae+multiview+entropy-subtract", "AE, multiview, entropy (subtract)"),
    ("rotnet_ae", "rotnet_ae (with refinement)"),
]
# What each alternative score of a run is, in the words (others keep their name).
COMPONENT_LABELS = {
    ("rotnet_ae", "coarse"): "rotnet_ae without refinement (coarse score, same networks)",
    ("rotnet_ae", "rotation"): "rotnet_ae, rotation head alone (same networks)",
}
# Alternative scores whose model is the run's model minus some training stages: their fit
# time is the run's minus those stages' (from the records' ``stage_seconds``).
COMPONENT_SKIPS = {("rotnet_ae", "coarse"): ("refine",)}
# A variant without its own folder is read from the plain AE's run when that run scored it
# too (``reconad benchmark --also-score ...``): the same trained networks, scored both ways.
N_CLASSES = 10


def _classes(s: dict) -> str:
    n = len(s["rows"])
    return str(n) if n == N_CLASSES else f"{n} of {N_CLASSES} (partial)"


def _same_classes(label: str, base_records: list[dict], classes: list[int]) -> str:
    """The AE rows over a partial row's classes only, so that the two compare."""
    sub = summarize([r for r in base_records if r["class"] in classes])
    parts = [f"plain {sub['mean']:.1f}"]
    parts += [f"{k[1:]} {v:.1f}" for k, v in sub["component_means"].items() if k.startswith("+")]
    n = len(classes)
    return f"| {label}: the AE over the same {n} classes | {'; '.join(parts)} | {n} | | | |"


def _dur(sec: float) -> str:
    return f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.0f} min"


def _fit_without(records: list[dict], skipped: tuple[str, ...] | None) -> str:
    """Total fit minutes without the ``skipped`` training stages ("(same run)" if none)."""
    if not skipped or not all("stage_seconds" in r for r in records):
        return "(same run)"
    sec = sum(
        r["fit_seconds"] - sum(r["stage_seconds"].get(k, 0) for k in skipped) for r in records
    )
    return f"{_dur(sec)} (without {', '.join(skipped)})"


def table(dataset: str, root: Path) -> str:
    """The markdown table for the variants found under ``root/dataset``."""
    head = "| variant | mean AUROC | classes | runs | fit, all runs | scoring, all runs |"
    lines = [head, "|---|---|---|---|---|---|"]
    base_records = collect_records(root / dataset / "ae")
    base = summarize(base_records) if base_records else None
    shared = base["component_means"] if base else {}
    for folder, label in VARIANTS:
        records = collect_records(root / dataset / folder)
        tag = folder[len("ae") :]
        if not records and tag in shared:
            lines.append(f"| {label} | {shared[tag]:.1f} | {_classes(base)} | (the `ae` run) | | |")
            continue
        if not records:
            lines.append(f"| {label} | not run ({root / dataset / folder}) | | | | |")
            continue
        s = summarize(records)
        fit = _dur(s["total_fit_seconds"])
        scored = _dur(sum(r["score_seconds"] for r in records))
        n, runs = _classes(s), s["n_runs"]
        mean = f"{s['mean']:.1f}"
        if len({r["seed"] for r in records}) > 1:
            mean += f" ± {s['mean_std_over_seeds']:.1f}"
        lines.append(f"| {label} | {mean} | {n} | {runs} | {fit} | {scored} |")
        for name, cmean in s["component_means"].items():
            if name.startswith("+"):
                continue  # scoring variants: shown as rows of their own above
            what = COMPONENT_LABELS.get((folder, name), f"{label}: {name} score")
            cfit = _fit_without(records, COMPONENT_SKIPS.get((folder, name)))
            lines.append(f"| {what} | {cmean:.1f} | {n} | {runs} | {cfit} | |")
        classes = [row["class"] for row in s["rows"]]
        if folder != "ae" and base and len(classes) < N_CLASSES:
            lines.append(_same_classes(label, base_records, classes))
    arnet = published_auroc("arnet", dataset).get("mean")  # the goal
    if arnet is not None:
        lines.append(f"| ARNet, published | {arnet} | {N_CLASSES} | | | |")
    return "\n".join(lines)


def entropy_table(dataset: str, root: Path) -> str:
    """Mean Spearman correlation of each score with image entropy on the normal test images
    (``benchmarks/entropy_correlation.py --models``, the benchmark's own AE networks)."""
    path = root / "entropy_correlation" / f"{dataset}_ae_all.json"
    if not path.exists():
        return f"(no entropy correlation yet: {path})"
    classes = json.loads(path.read_text())["classes"]
    lines = ["| AE score | Spearman with entropy (mean over classes) | AUROC |", "|---|---|---|"]
    for key in CORRELATED:
        rows = [
            r
            for res in classes.values()
            for r in res["rows"]
            if (r["score"], r["difficulty"], r["mode"]) == key
        ]
        name = " + ".join(k for k in key if k not in ("none", "-"))
        rho = np.mean([r["spearman_entropy"] for r in rows])
        auc = np.mean([r["auroc"] for r in rows])
        lines.append(f"| {name} | {rho:+.2f} | {auc:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ds = sys.argv[1] if len(sys.argv) > 1 else "fmnist"
    where = Path(sys.argv[2] if len(sys.argv) > 2 else "benchmarks/results")
    print(table(ds, where))
    print()
    print(entropy_table(ds, where))

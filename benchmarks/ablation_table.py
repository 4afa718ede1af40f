"""Issue 5's ablation table from the one-class summaries that scoring_ablation.sh writes.

Per variant: mean AUROC over the classes (and its std over seeds), each alternative score's
mean (e.g. rotnet_ae's ``coarse``: the score without refinement), the total fit time and
the number of runs; ARNet's published mean beside them.

    python benchmarks/ablation_table.py fmnist [benchmarks/results]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VARIANTS = [
    ("ae", "plain AE, MSE"),
    ("ae+multiview", "AE, multiview"),
    ("ae+multiview+entropy", "AE, multiview, entropy (divide)"),
    ("ae+multiview+entropy-subtract", "AE, multiview, entropy (subtract)"),
    ("rotnet_ae", "rotnet_ae (with refinement)"),
]
# A variant without its own folder is read from the plain AE's run when that run scored it
# too (``reconad benchmark --also-score ...``): the same trained networks, scored both ways.
ARNET = {"fmnist": 93.9, "cifar10": 86.6}


def table(dataset: str, root: Path) -> str:
    """The markdown table for the variants found under ``root/dataset``."""
    lines = ["| variant | mean AUROC | runs | fit, all classes |", "|---|---|---|---|"]
    base = root / dataset / "ae" / "summary.json"
    shared = json.loads(base.read_text()).get("component_means", {}) if base.exists() else {}
    for folder, label in VARIANTS:
        p = root / dataset / folder / "summary.json"
        tag = folder[len("ae") :]
        if not p.exists() and tag in shared:
            lines.append(f"| {label} | {shared[tag]:.1f} | (scored by the `ae` run) | |")
            continue
        if not p.exists():
            lines.append(f"| {label} | not run ({p.parent}) | | |")
            continue
        s = json.loads(p.read_text())
        std = s.get("mean_std_over_seeds") or 0.0
        fit = f"{s['total_fit_seconds'] / 60:.0f} min"
        lines.append(f"| {label} | {s['mean']:.1f} ± {std:.1f} | {s['n_runs']} | {fit} |")
        for name, mean in (s.get("component_means") or {}).items():
            if name.startswith("+"):
                continue  # scoring variants: shown as rows of their own above
            lines.append(f"| {label}: {name} score | {mean:.1f} | {s['n_runs']} | (same run) |")
    if dataset in ARNET:
        lines.append(f"| ARNet, published | {ARNET[dataset]} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    ds = sys.argv[1] if len(sys.argv) > 1 else "fmnist"
    print(table(ds, Path(sys.argv[2] if len(sys.argv) > 2 else "benchmarks/results")))

"""The one-class protocol's summary: per class, our mean (and std over seeds) beside the
published number and the difference; ``summary.csv`` / ``summary.json``; the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reconad.protocols.engine import fmt, mean_cell
from reconad.reference import published_auroc, published_source
from reconad.serialize import write_csv, write_json


def _published_mean(ref: dict[str, float], classes: list[int]) -> float | None:
    """The published mean over the classes we ran: the paper's own mean when we ran every
    class it lists, else the mean of its per-class numbers for our classes (a mean over
    all ten classes beside ours over two would mislead)."""
    per_class = {k: v for k, v in ref.items() if k != "mean"}
    if not per_class or set(per_class) <= {str(c) for c in classes}:
        return ref.get("mean")
    if all(str(c) in per_class for c in classes):
        return float(np.mean([per_class[str(c)] for c in classes]))
    return None


def summarize(
    records: list[dict[str, Any]],
    reference_method: str | None = None,
    references: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Per-class mean/std over seeds, with published numbers and differences.

    ``references`` names further methods whose published numbers are shown beside ours
    (e.g. Deep SVDD's and ARNet's beside DDR-ID); the AUROC of each score component a
    method offers (``components`` in the records) is averaged like the main one.
    """
    if not records:
        return {"rows": [], "mean": None}
    dataset, method = records[0]["dataset"], records[0]["method"]
    ref = published_auroc(reference_method or method, dataset)
    others = {m: published_auroc(m, dataset) for m in references}
    rows = []
    for c in sorted({r["class"] for r in records}):
        rs = [r for r in records if r["class"] == c]
        aurocs = np.array([r["auroc"] for r in rs])
        pub = ref.get(str(c))
        rows.append(
            {
                "class": c,
                "class_name": rs[0].get("class_name", str(c)),
                "auroc": float(aurocs.mean()),
                "auroc_std": float(aurocs.std()) if len(aurocs) > 1 else 0.0,
                "seeds": sorted(r["seed"] for r in rs),
                "published": pub,
                "diff": None if pub is None else float(aurocs.mean() - pub),
                "components": _mean_components(rs),
                "references": {m: o.get(str(c)) for m, o in others.items()},
                "fit_seconds": float(np.mean([r["fit_seconds"] for r in rs])),
                "score_seconds": float(np.mean([r["score_seconds"] for r in rs])),
                "peak_rss_mb": float(max(r["peak_rss_mb"] for r in rs)),
            }
        )
    per_seed_means = [
        np.mean([r["auroc"] for r in records if r["seed"] == s])
        for s in sorted({r["seed"] for r in records})
    ]
    mean = float(np.mean([row["auroc"] for row in rows]))
    pub_mean = _published_mean(ref, [row["class"] for row in rows])
    return {
        "dataset": dataset,
        "method": method,
        "preset": records[0].get("preset"),
        "scoring": _scoring_tag(records[0]),
        "rows": rows,
        "mean": mean,
        "mean_std_over_seeds": float(np.std(per_seed_means)) if len(per_seed_means) > 1 else 0.0,
        "published_mean": pub_mean,
        "diff_mean": None if pub_mean is None else mean - pub_mean,
        "component_means": {
            k: float(np.mean([row["components"][k] for row in rows]))
            for k in rows[0]["components"]
            if all(k in row["components"] for row in rows)
        },
        "reference_means": {
            m: _published_mean(o, [row["class"] for row in rows]) for m, o in others.items()
        },
        "published_source": published_source(reference_method or method, dataset),
        "total_fit_seconds": float(sum(r["fit_seconds"] for r in records)),
        "total_score_seconds": float(sum(r["score_seconds"] for r in records)),
        "peak_rss_mb": float(max(r["peak_rss_mb"] for r in records)),
        "n_runs": len(records),
        "versions": records[-1].get("versions"),
        "git_commit": records[-1].get("git_commit"),
    }


def _scoring_tag(record: dict[str, Any]) -> str:
    """``+multiview+entropy`` etc. for a record's scoring options ("" when native)."""
    from reconad.scoring import ScoringSpec

    return ScoringSpec.from_record(record.get("scoring")).name


def _mean_components(records: list[dict[str, Any]]) -> dict[str, float]:
    names = sorted({k for r in records for k in r.get("components", {})})
    return {
        k: float(np.mean([r["components"][k] for r in records if k in r.get("components", {})]))
        for k in names
    }


def _extra_columns(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Component names and reference methods present in a summary (older ones lack them)."""
    rows = summary["rows"]
    comps = sorted({k for row in rows for k in row.get("components", {})})
    return comps, list(summary.get("reference_means", {}))


def _mean_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's means (total times) as a class row, the last row of the CSV and table."""
    return {
        "class": "mean",
        "auroc": summary["mean"],
        "auroc_std": summary["mean_std_over_seeds"],
        "published": summary["published_mean"],
        "diff": summary["diff_mean"],
        "components": summary.get("component_means", {}),
        "references": summary.get("reference_means", {}),
        "fit_seconds": summary["total_fit_seconds"],
        "score_seconds": summary["total_score_seconds"],
        "peak_rss_mb": summary["peak_rss_mb"],
    }


def write_summary(summary: dict[str, Any], out_dir: Path) -> None:
    """Write ``summary.json`` and ``summary.csv`` beside the per-run files."""
    out_dir = Path(out_dir)
    write_json(out_dir / "summary.json", summary)
    comps, refs = _extra_columns(summary)
    fields = ["class", "class_name", "auroc", "auroc_std"]
    fields += [f"auroc_{k}" for k in comps] + [f"published_{m}" for m in refs]
    fields += ["published", "diff", "fit_seconds", "score_seconds", "peak_rss_mb"]
    rows = []
    for row in [*summary["rows"], _mean_row(summary)]:
        extra = {f"auroc_{k}": v for k, v in row.get("components", {}).items()}
        extra.update({f"published_{m}": v for m, v in row.get("references", {}).items()})
        rows.append({**row, **extra})
    write_csv(out_dir / "summary.csv", fields, rows)


def render_table(summary: dict[str, Any]):
    """A rich Table of the summary: class, ours (+- std), published, difference, time."""
    from rich.table import Table

    name = summary["method"] + summary.get("scoring", "")
    title = f"{name} on {summary['dataset']} (preset {summary['preset']})"
    t = Table(title=title)
    comps, refs = _extra_columns(summary)
    # without published numbers of the method itself, its published/diff columns are left out
    own = summary["published_mean"] is not None or any(
        r["published"] is not None for r in summary["rows"]
    )
    cols = ["class", "AUROC %", *(f"{k} %" for k in comps), *(["published", "diff"] * own)]
    cols += [f"{m} (pub.)" for m in refs] + ["fit s", "score s"]
    for col in cols:
        t.add_column(col, justify="right" if col != "class" else "left")
    for r in [*summary["rows"], _mean_row(summary)]:
        is_mean = r["class"] == "mean"
        t.add_row(
            "mean" if is_mean else f"{r['class']} {r['class_name']}",
            mean_cell(r["auroc"], r["auroc_std"], len(r.get("seeds", ()))),
            *(fmt(r.get("components", {}).get(k)) for k in comps),
            *([fmt(r["published"]), fmt(r["diff"], True)] * own),
            *(fmt(r.get("references", {}).get(m)) for m in refs),
            f"{r['fit_seconds']:.0f}",
            f"{r['score_seconds']:.1f}",
            style="bold" if is_mean else None,
        )
    return t

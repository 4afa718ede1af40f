"""One markdown table across methods from the industrial protocol's seed results.

Reads every ``<results>/<method>/seed*.json`` written by ``reconad benchmark --dataset
magnetic-tile --method M`` (the seed files, not ``summary.json``: a run stopped between a
seed's file and its summary would leave the summary stale) and prints, per method, its input
side, mean +- std over its seeds of image AUROC, pixel AUROC, AUPRO, the image AUROC per
defect type, optimiser steps, fit and scoring wall time and peak memory, with the number of
seeds (a method run on fewer seeds than the others says so).

    python benchmarks/industrial_table.py [benchmarks/results/magnetic-tile]
    python benchmarks/industrial_table.py --write docs/industrial.md FOLDER...

``--write`` replaces the tables between the document's two markers (BEGIN, END below), so
the document is regenerated from the records rather than edited by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from reconad.protocols.industrial import collect_industrial
from reconad.protocols.industrial_summary import summarize_industrial


def _cell(rows: dict, key: str, digits: int = 1) -> str:
    r = rows.get(key)
    if r is None or r["mean"] is None:
        return "-"
    if r["n_seeds"] < 2:
        return f"{r['mean']:.{digits}f}"
    return f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}"


def table(folder: Path) -> str:
    """The markdown table for every method folder under ``folder``."""
    methods = sorted({p.parent for p in folder.glob("*/seed*.json")})
    types: list[str] = []
    loaded = []
    for d in methods:
        records = collect_industrial(d)
        if not records:
            continue  # e.g. utad-terms/: an analysis of a saved model, not a benchmark run
        rows = {r["metric"]: r for r in summarize_industrial(records)["rows"]}
        size = (records[0].get("settings") or {}).get("size")
        loaded.append((d.name, size, rows))
    if not loaded:
        raise SystemExit(f"no benchmark seed*.json under {folder}")
    for _, _, rows in loaded:
        types += [k[6:-1] for k in rows if k.startswith("auroc[") and k[6:-1] not in types]
    head = ["method", "input", "seeds", "image AUROC", "chosen score", "pixel AUROC"]
    head += ["AUPRO (0.3)"]
    head += [f"{t}" for t in types] + ["steps", "fit s", "score s", "peak RSS GB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, size, rows in loaded:
        n = max((r["n_seeds"] for r in rows.values()), default=0)
        rss = rows.get("peak_rss_mb")
        rss_cell = "-" if rss is None or rss["mean"] is None else f"{rss['mean'] / 1024:.1f}"
        cells = [name, f"{size}x{size}" if size else "-", str(n)]
        cells += [_cell(rows, k) for k in ("auroc", "auroc_chosen", "pixel_auroc", "aupro")]
        cells += [_cell(rows, f"auroc[{t}]") for t in types]
        cells += [_cell(rows, "steps", 0), _cell(rows, "fit_seconds", 0)]
        cells += [_cell(rows, "score_seconds"), rss_cell]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


BEGIN, END = "<!-- industrial tables: begin -->", "<!-- industrial tables: end -->"


def tables(folders: list[str]) -> str:
    """One table per folder, each under a heading when there are several."""
    parts = []
    for f in folders:
        head = f"### {Path(f).name} (`{f}`)\n\n" if len(folders) > 1 else ""
        parts.append(head + table(Path(f)))
    return "\n\n".join(parts)


def write_between_markers(doc: Path, text: str) -> None:
    """Replace what lies between BEGIN and END in ``doc`` (both must be there)."""
    old = doc.read_text()
    if BEGIN not in old or END not in old:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} markers to write between")
    head, rest = old.split(BEGIN, 1)
    doc.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    args = sys.argv[1:]
    write = None
    if args[:1] == ["--write"]:
        write, args = Path(args[1]), args[2:]
    text = tables(args or ["benchmarks/results/magnetic-tile"])
    if write is None:
        print(text)
    else:
        write_between_markers(write, text)
        print(f"wrote the tables into {write}")

"""Rewrite the results tables of the method cards from the committed benchmark summaries.

Each card (``src/reconad/methods/<package>/README.md``) holds its table between the lines
``<!-- results:begin -->`` and ``<!-- results:end -->``; only that text is rewritten. The
table lists every ``benchmarks/results/**/summary.json`` written by a method the package
registers (its ``method`` field, or for the adversarial protocol its folder name), one
table per data set: the results folder, the seeds and the headline metrics. Three kinds of
summary are read: one-class (``reconad.protocols.one_class_summary.summarize``), industrial
(``reconad.protocols.industrial_summary.summarize_industrial``) and adversarial.

    python benchmarks/method_cards.py            # rewrite the cards
    python benchmarks/method_cards.py --check    # exit 1 if a card is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

KINDS = ("one-class", "industrial", "adversarial")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ROOT / "src" / "reconad" / "methods"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
_BLOCK = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)


def methods_by_package() -> dict[str, list[str]]:
    """The registered method names of each method package, e.g. ``{"ae": ["ae", "ssim_ae"]}``."""
    from reconad.methods import get_method, list_methods

    out: dict[str, list[str]] = {}
    for name in list_methods():
        package = get_method(name).__module__.split(".")[2]
        out.setdefault(package, []).append(name)
    return out


def load_summaries(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Every summary under ``results``, each with ``kind``, ``folder`` (relative to
    ``results``), ``dataset`` and ``method`` added, sorted by data set and folder."""
    out = []
    for path in sorted(results.glob("**/summary.json")):
        data = json.loads(path.read_text())
        folder = path.parent.relative_to(results).as_posix()
        if "classifier" in data:  # adversarial: method, preset, seeds in the target records
            records = [json.loads(p.read_text()) for p in path.parent.glob("*_seed*.json")]
            kind, dataset, method = "adversarial", records[0]["dataset"], records[0]["method"]
            data["preset"] = records[0].get("preset")
            data["seeds"] = sorted({r["seed"] for r in records})
        else:
            kind = "industrial" if "settings" in data else "one-class"
            dataset, method = data["dataset"], data["method"]
        out.append({**data, "kind": kind, "folder": folder, "dataset": dataset, "method": method})
    return sorted(out, key=lambda s: (KINDS.index(s["kind"]), s["dataset"], s["folder"]))


def _f(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if not std else f"{v:.1f} ± {std:.1f}"


def _others(components: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(components.items())) or "-"


def _one_class_row(s: dict[str, Any]) -> list[str]:
    seeds = sorted({seed for row in s["rows"] for seed in row["seeds"]})
    pub = {s["method"]: s.get("published_mean"), **(s.get("reference_means") or {})}
    pub = {m: v for m, v in pub.items() if v is not None}
    return [
        f"`{s['folder']}`",
        s["method"] + (s.get("scoring") or ""),
        str(s.get("preset")),
        ",".join(map(str, seeds)),
        str(len(s["rows"])),
        f"**{_f(s['mean'], s.get('mean_std_over_seeds'))}**",
        ", ".join(f"{m} {v:.1f}" for m, v in pub.items()) or "-",
        _others(s.get("component_means") or {}),
        f"{s['total_fit_seconds'] / max(1, s['n_runs']):.0f}",
    ]


def _industrial_row(s: dict[str, Any]) -> list[str]:
    rows = {r["metric"]: r for r in s["rows"]}

    def cell(key: str) -> str:
        r = rows.get(key)
        return "-" if r is None else _f(r["mean"], r["std"] if r["n_seeds"] > 1 else None)

    chosen = cell("auroc_chosen")
    if "image_score_chosen" in rows:
        names = sorted(set(rows["image_score_chosen"]["per_seed"].values()))
        chosen += f" ({', '.join(names)})"
    comps = {k[10:-1]: r["mean"] for k, r in rows.items() if k.startswith("component[")}
    inp, settings = s.get("input") or {}, s.get("settings") or {}
    h, w = inp.get("working_size") or (inp.get("height"), inp.get("width"))
    size = f"{inp.get('channels')}x{h}x{w}"
    size += f", {inp['patch']}px tiles" if "patch" in inp else ""
    changed = {**settings.get("hparams", {}), "normalize": settings.get("normalize")}
    if settings.get("epochs_scale", 1.0) != 1.0:
        changed["epochs_scale"] = settings["epochs_scale"]
    changed = ", ".join(f"{k}={v}" for k, v in changed.items() if v is not None) or "-"
    return [
        f"`{s['folder']}`",
        s["method"],
        str(s.get("preset")),
        changed,
        size,
        ",".join(map(str, s["seeds"])),
        f"**{cell('auroc')}**",
        chosen,
        cell("pixel_auroc"),
        cell("aupro"),
        _others({k: v for k, v in comps.items() if v is not None}),
        "-" if "fit_seconds" not in rows else f"{rows['fit_seconds']['mean']:.0f}",
    ]


def _adversarial_rows(s: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in s["rows"]:
        e255 = r["epsilon_255"]
        eps = f"{e255:g}/255" if float(e255).is_integer() else f"{r['epsilon']:g}"
        out.append(
            [
                f"`{s['folder']}`",
                str(s.get("preset")),
                ",".join(map(str, s["seeds"])),
                r["attack"],
                eps,
                str(r["targets"]),
                _f(r["success_rate"]),
                _f(r["auroc"]),
                f"**{_f(r['auroc_paired'])}**",
                _others(r.get("components_paired") or {}),
            ]
        )
    return out


HEADS = {
    "one-class": [
        "results folder", "method", "preset", "seeds", "classes", "mean AUROC %",
        "published mean", "other scores (AUROC %)", "fit s per run",
    ],
    "industrial": [
        "results folder", "method", "preset", "settings", "input", "seeds", "image AUROC %",
        "chosen on synthetic defects", "pixel AUROC %", "AUPRO % (0.3)",
        "other scores (AUROC %)", "fit s per seed",
    ],
    "adversarial": [
        "results folder", "preset", "seeds", "attack", "eps", "targets", "success %", "AUROC %",
        "AUROC paired %", "other scores, paired",
    ],
}  # fmt: skip
TITLES = {"one-class": "one-class protocol", "industrial": "industrial protocol"}


def render(methods: list[str], summaries: list[dict[str, Any]]) -> str:
    """The markdown between the markers for a card of ``methods``."""
    mine = [s for s in summaries if s["method"] in methods]
    if not mine:
        return "No committed results yet.\n"
    parts = []
    for kind, dataset in dict.fromkeys((s["kind"], s["dataset"]) for s in mine):
        rows: list[list[str]] = []
        for s in mine:
            if (s["kind"], s["dataset"]) == (kind, dataset):
                if kind == "adversarial":
                    rows += _adversarial_rows(s)
                else:
                    rows.append((_one_class_row if kind == "one-class" else _industrial_row)(s))
        head = HEADS[kind]
        lines = [f"**{dataset}**, {TITLES.get(kind, kind + ' protocol')}:", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def update_cards(check: bool = False, results: Path = RESULTS, methods_dir: Path = METHODS) -> int:
    """Rewrite (or with ``check`` only compare) every card's results block.

    Returns:
        The number of cards that were (or, with ``check``, would be) changed.

    Raises:
        ValueError: a method package without a card, or a card without both markers.
    """
    summaries = load_summaries(results)
    stale = 0
    for package, names in sorted(methods_by_package().items()):
        card = methods_dir / package / "README.md"
        if not card.is_file():
            raise ValueError(f"method package {package!r} has no card: {card} is missing")
        text = card.read_text()
        if not _BLOCK.search(text):
            raise ValueError(f"{card} lacks the {BEGIN} ... {END} markers")
        block = f"{BEGIN}\n{render(names, summaries)}{END}"
        new = _BLOCK.sub(lambda _, block=block: block, text, count=1)
        if new != text:
            stale += 1
            print(f"{'out of date' if check else 'rewrote'}: {card.relative_to(ROOT)}")
            if not check:
                card.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite the cards, or with ``--check`` exit 1 if one is out of date."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only say which cards are stale")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    args = parser.parse_args(argv)
    stale = update_cards(check=args.check, results=args.results)
    if args.check and stale:
        print("run `python benchmarks/method_cards.py` to rewrite them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

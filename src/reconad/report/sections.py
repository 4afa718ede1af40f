"""HTML sections of the report: model card, metrics, per-type table, gallery, curves.

Each function returns an HTML fragment (a string). Every number that comes from the
metrics dict is written in a cell marked ``data-metric="<dotted key>"`` with the exact value
in ``data-value``, so a test (or a script) can check the page against ``metrics.json``.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from reconad.detector import input_line
from reconad.report.gallery import GROUPS, Gallery

#: (metrics key, label) of the rows of the metrics table, in order
METRIC_ROWS = [
    ("auroc", "image AUROC"),
    ("auroc_chosen", "image AUROC, score chosen on synthetic defects"),
    ("ap", "image average precision"),
    ("tpr_at_5fpr", "true-positive rate at 5% false positives (read on the test set)"),
    ("f1_max_oracle", "F1-max (oracle: the best threshold on the test set)"),
    ("pixel_auroc", "pixel AUROC"),
    ("aupro", "AUPRO (false-positive rate up to 0.3)"),
    ("calibrated.test_fpr", "false-positive rate at the model's threshold"),
    ("calibrated.test_tpr", "true-positive rate at the model's threshold"),
    ("calibrated_pixel.test_fpr", "pixel false-positive rate at the pixel threshold"),
    ("calibrated_pixel.test_tpr", "pixel true-positive rate at the pixel threshold"),
]


def get(d: dict[str, Any], dotted: str) -> Any:
    """``d["a"]["b"]`` for ``"a.b"``; None where any part is missing."""
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def num(key: str, value: Any, digits: int = 2, suffix: str = "") -> str:
    """A table cell holding one number, marked with its metrics key and exact value."""
    if value is None or isinstance(value, str):
        return f'<td class="num">{escape(str(value) if value is not None else "-")}</td>'
    count = isinstance(value, int) and not isinstance(value, bool)
    shown = str(value) if count else f"{float(value):.{digits}f}"
    return (
        f'<td class="num" data-metric="{escape(key)}" data-value="{float(value)!r}">'
        f"{shown}{suffix}</td>"
    )


def model_card(config: dict[str, Any], metrics: dict[str, Any], data: str) -> str:
    """The model card as a definition list: method, provenance, data, training, threshold."""
    cal, tr, inp = config.get("calibration", {}), config.get("training", {}), config["input"]
    sc = config.get("scoring", {})
    shape = input_line(inp)
    steps = tr.get("steps")
    training = ", ".join(
        s
        for s in (
            f"{steps:,} optimiser steps" if steps else "",
            f"{tr['images_seen']:,} images seen" if tr.get("images_seen") else "",
            f"{float(tr['seconds']):.0f} s" if tr.get("seconds") else "",
            f"epochs scale {tr['epochs_scale']}" if tr.get("epochs_scale") is not None else "",
            f"augment {', '.join(tr['augment'])}" if tr.get("augment") else "",
            f"precision {tr['precision']}" if tr.get("precision") else "",
        )
        if s
    )
    chosen = sc.get("image_score", "native")
    aur = sc.get("image_score_auroc") or {}
    if aur:
        told = ", ".join(f"{k} {100 * v:.1f}" for k, v in aur.items())
        chosen += f" (chosen on held-out normals vs synthetic defects, AUROC: {told})"
    t = cal.get("threshold")
    if t is not None and np.isfinite(t):
        fpr = 100 * (cal.get("target_fpr") or float("nan"))
        how = (
            f"<b>{t:.6g}</b>: {fpr:g}% false positives on {cal.get('n_val')} held-out normal "
            "images; no defective image was used"
        )
    else:
        how = "none: the model held out no normal images (fitted with --val-fraction 0)"
    at = metrics.get("calibrated")
    if at:
        how += (
            f'. On this test set: false-positive rate <span data-metric="calibrated.test_fpr" '
            f'data-value="{at["test_fpr"]!r}">{at["test_fpr"]:.2f}%</span>, true-positive '
            f'rate <span data-metric="calibrated.test_tpr" data-value="{at["test_tpr"]!r}">'
            f"{at['test_tpr']:.2f}%</span>"
        )
    n_types = {k: v for k, v in (metrics.get("n_per_type") or {}).items() if k != "good"}
    n_good = (metrics.get("n_per_type") or {}).get("good")
    evaluated = (
        f"{escape(data)}: {metrics.get('n_test')} test images, {n_good} good and "
        f"{metrics.get('n_anomalous')} defective ("
        + ", ".join(f"{escape(k)} {v}" for k, v in n_types.items())
        + ")"
    )
    hp = ", ".join(f"{k}={v}" for k, v in (config.get("hparams") or {}).items())
    vers = ", ".join(f"{k} {v}" for k, v in (config.get("versions") or {}).items())
    rows = [
        ("Method", f"<code>{escape(config['method'])}</code>, preset "
         f"<code>{escape(str(config.get('preset')))}</code>"),
        ("Provenance", escape(str(config.get("provenance", "")))),
        ("Trained on", f"{tr.get('n_train')} normal images, seed {tr.get('seed')}"),
        ("Training", escape(training) or "-"),
        ("Input", escape(shape)),
        ("Score", escape(f"{sc.get('score', 'native')}, difficulty {sc.get('difficulty', 'none')}"
                         f", image score {chosen}")),
        ("Threshold", how),
        ("Evaluated on", evaluated),
        ("Hyper-parameters", f"<small>{escape(hp)}</small>"),
        ("Versions", f"<small>{escape(vers)}</small>"),
    ]  # fmt: skip
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section id="card"><h2>Model</h2><dl class="card">{body}</dl></section>'


def metrics_table(
    metrics: dict[str, Any], method: str, published: dict[str, dict[str, tuple[float, str]]]
) -> str:
    """Our metrics (in %) with the published numbers beside them, where they exist."""
    others = [m for m in published if m != method]
    own = published.get(method, {})
    head = "<th>metric</th><th>ours %</th>"
    if own:
        head += f"<th>published {escape(method)}</th><th>ours - published</th>"
    head += "".join(f"<th>published {escape(m)}</th>" for m in others)
    rows = []
    keys = METRIC_ROWS + [
        (f"components.{c}", f"image AUROC of the score {c}") for c in metrics.get("components", {})
    ]
    for key, label in keys:
        v = get(metrics, key)
        if v is None:
            continue
        bold = ' class="head"' if key in ("auroc", "pixel_auroc", "aupro") else ""
        cells = [f"<td>{escape(label)}</td>", num(key, v)]
        if own:
            p = own.get(key)
            cells.append(num("", None) if p is None else f'<td class="num pub">{p[0]:.1f}</td>')
            cells.append(num("", None) if p is None else f'<td class="num">{v - p[0]:+.1f}</td>')
        for m in others:
            p = published[m].get(key)
            cells.append(f'<td class="num pub">{"-" if p is None else f"{p[0]:.1f}"}</td>')
        rows.append(f"<tr{bold}>{''.join(cells)}</tr>")
    notes = ""
    if metrics.get("pixel_note"):
        notes += f"<p class=note>No pixel metrics: {escape(metrics['pixel_note'])}.</p>"
    if published:
        notes += (
            "<p class=note>Published numbers come from reconad's reference/published.csv; "
            "their settings (image size, training length, split) may differ from this "
            "model's: see the sources.</p>"
        )
    notes += _sources(published)
    return (
        '<section id="metrics"><h2>Metrics</h2>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{notes}</section>"
    )


def _sources(published: dict[str, dict[str, tuple[float, str]]]) -> str:
    srcs = sorted({f"{m}: {s}" for m, d in published.items() for _, s in d.values()})
    if not srcs:
        return ""
    items = "".join(f"<li>{escape(s)}</li>" for s in srcs)
    summary = "<summary>Sources of the published numbers</summary>"
    return f'<details class="note">{summary}<ul>{items}</ul></details>'


def summary_table(summary: dict[str, Any], published: dict[str, tuple[float, str]]) -> str:
    """The benchmark's summary over seeds: mean ± std and each seed, with the published."""
    seeds = summary["seeds"]
    pub_key = {"auroc": "auroc", "pixel_auroc": "pixel_auroc", "aupro": "aupro"}
    head = "<th>metric</th><th>mean</th><th>std</th>" + "".join(f"<th>seed {s}</th>" for s in seeds)
    head += "<th>published</th>" if published else ""
    rows = []
    for row in summary["rows"]:
        key = f"summary.{row['metric']}"
        digits = 1 if row["metric"].endswith(("seconds", "mb", "metrics", "steps", "seen")) else 2
        cells = [f"<td>{escape(row['label'].strip())}</td>"]
        cells += [num(f"{key}.mean", row["mean"], digits), num(f"{key}.std", row["std"], digits)]
        cells += [num(f"{key}.seed{s}", row["per_seed"].get(s), digits) for s in seeds]
        if published:
            p = published.get(pub_key.get(row["metric"], ""))
            cells.append(f'<td class="num pub">{"-" if p is None else f"{p[0]:.1f}"}</td>')
        bold = ' class="head"' if row["metric"] in pub_key else ""
        rows.append(f"<tr{bold}>{''.join(cells)}</tr>")
    return (
        f'<section id="summary"><h2>Over {len(seeds)} seed(s)</h2>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def per_type_table(metrics: dict[str, Any], labels_by_type: dict[str, np.ndarray]) -> str:
    """Per defect type: images, image AUROC against the good images, and how many of them
    the model's threshold flags (for ``good``: the false alarms)."""
    t = (metrics.get("calibrated") or {}).get("threshold")
    scores = np.asarray(metrics["scores"])
    rows = []
    for name, idx in labels_by_type.items():
        n = len(idx)
        auroc = (metrics.get("auroc_per_type") or {}).get(name)
        cell = num(f"auroc_per_type.{name}", auroc) if name != "good" else "<td>-</td>"
        if t is not None and n:
            k = int((scores[idx] > t).sum())
            what = "false alarms" if name == "good" else "detected"
            flagged = f"<td class=num>{k} / {n} {what} ({100 * k / n:.0f}%)</td>"
        else:
            flagged = "<td>-</td>"
        rows.append(
            f"<tr><td>{escape(name)}</td>"
            f'<td class="num" data-metric="n_per_type.{escape(name)}" data-value="{n}">{n}</td>'
            f"{cell}{flagged}</tr>"
        )
    head = "<th>type</th><th>images</th><th>image AUROC % (vs good)</th><th>at the threshold</th>"
    return (
        '<section id="types"><h2>Per defect type</h2>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def gallery_html(g: Gallery) -> str:
    """The three groups of images, each image with its panels and a caption."""
    parts = ['<section id="gallery"><h2>Gallery</h2>']
    if g.map_range is not None:
        parts.append(
            f"<p class=note>Maps share one colour scale ({g.map_range[0]:.3g} to "
            f"{g.map_range[1]:.3g}), the ground-truth mask is outlined in cyan. Images are "
            "shown as the model saw them (resized to its input).</p>"
        )
    for group, with_t, without_t in GROUPS:
        title = with_t if g.threshold is not None else without_t
        items, total = g.groups.get(group, []), g.totals.get(group, 0)
        shown = f"showing {len(items)} of {total}" if total else "none"
        parts.append(f'<h3 id="g-{group}">{title} <small>({shown})</small></h3>')
        if not items:
            parts.append("<p class=note>No image in this group.</p>")
            continue
        parts.append('<div class="items">')
        for it in items:
            panels = "".join(
                f'<figure><img src="{uri}" alt="{escape(it.name)}: {escape(lbl)}">'
                f"<figcaption>{escape(lbl)}</figcaption></figure>"
                for lbl, uri in it.panels
            )
            verdict = "" if it.flagged is None else (" flagged" if it.flagged else " passed")
            p = "" if it.p_value is None else f", p-value {it.p_value:.3g}"
            parts.append(
                f'<div class="item {group}"><div class="panels">{panels}</div>'
                f'<div class="cap"><b>{escape(it.kind)}</b> {escape(it.name)}: score '
                f"{it.score:.4g}{p}{verdict}</div></div>"
            )
        parts.append("</div>")
    if g.note:
        parts.append(f"<p class=note>{escape(g.note)}</p>")
    parts.append("</section>")
    return "".join(parts)

"""One self-contained HTML page per evaluation: what a person looks at instead of JSON.

``reconad test --report FILE`` and ``reconad benchmark ... --report FILE`` (industrial
protocol) write it. The page needs no network: figures are inline PNG data URIs, the CSS is
inline, and its only script is a dozen lines that, on load, record whether every image
decoded and any script error in a hidden element (what the browser test reads).

The numbers are written from the same dict as ``metrics.json`` (or the seed records and
``summary.json``), each marked ``data-metric``/``data-value``. A page carries a ``generator``
meta tag, so an existing report may be replaced and any other file at the path is refused.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from reconad.report.figures import curves_uri, score_curves_uri
from reconad.report.gallery import Gallery, build_gallery
from reconad.report.sections import (
    gallery_html,
    metrics_table,
    model_card,
    per_type_table,
    summary_table,
)
from reconad.serialize import OutputRefused, atomic_write

MARKER = '<meta name="generator" content="reconad report">'

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2329;
 background:#f4f5f7;margin:0}
main{max-width:1220px;margin:0 auto;padding:18px 26px 40px}
header{background:#1d2b3a;color:#fff;padding:16px 26px}
header h1{margin:0;font-size:24px}header p{margin:4px 0 0;color:#c5d0db;font-size:13px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:12px 20px 16px;
 margin:16px 0}
h2{font-size:19px;margin:4px 0 10px;color:#1d2b3a}h3{font-size:16px;margin:16px 0 6px}
h3 small{color:#667;font-weight:normal}
dl.card{display:grid;grid-template-columns:150px 1fr;gap:4px 14px;margin:0}
dl.card dt{font-weight:600;color:#445}dl.card dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:14px}
th,td{padding:4px 10px;border-bottom:1px solid #e3e6ea;text-align:left}
th{background:#eef1f4;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.pub{color:#555}tr.head td{font-weight:600}
.note{color:#556;font-size:13px}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs img{max-width:100%}
.items{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:10px}
.item{border:1px solid #dde1e6;border-radius:6px;padding:6px;border-left:5px solid #999}
.item.detections{border-left-color:#31a354}.item.missed{border-left-color:#e6550d}
.item.false_alarms{border-left-color:#d62728}
.panels{display:flex;gap:6px;flex-wrap:wrap}
figure{margin:0;text-align:center}figure img{width:128px;height:128px;object-fit:contain;
 image-rendering:pixelated;background:#000;display:block}
figcaption{font-size:11px;color:#556}.cap{font-size:13px;margin-top:4px}
code{background:#eef1f4;padding:0 4px;border-radius:3px}
"""

# Records image decoding and script errors for the browser test; harmless for a reader.
_SELF_CHECK = """<script>
window.__reconadErrors=[];
window.addEventListener('error',function(e){window.__reconadErrors.push(String(e.message||
 ((e.target&&e.target.tagName)+' failed to load')))},true);
(function(){var ce=console.error;console.error=function(){window.__reconadErrors.push(
 Array.prototype.join.call(arguments,' '));return ce.apply(console,arguments)}})();
window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);
 var bad=im.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).map(function(i){
 return i.alt});document.getElementById('reconad-selfcheck').textContent=JSON.stringify(
 {images:im.length,undecoded:bad,errors:window.__reconadErrors})});
</script>"""


def is_our_report(path: str | Path) -> bool:
    """Whether ``path`` is a page this module wrote (its head holds ``MARKER``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return MARKER in f.read(4096)
    except OSError:
        return False


def check_report_path(path: str | Path) -> None:
    """Refuse a report path that exists and is not a report reconad wrote.

    Raises:
        OutputRefused: naming the path; nothing is written.
    """
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    if p.is_symlink() or not p.is_file() or not is_our_report(p):
        raise OutputRefused(
            f"--report {p} exists and is not a report reconad wrote; refusing to replace it "
            "(choose another path)"
        )


def page(title: str, subtitle: str, body: list[str]) -> str:
    """The whole document around the sections."""
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">{MARKER}'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style>{_SELF_CHECK}</head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header><main>"
        + "".join(body)
        + '<pre id="reconad-selfcheck" hidden></pre></main></body></html>\n'
    )


def _by_type(test: Any) -> dict[str, np.ndarray]:
    names = list(test.class_names)
    order = ["good", *(n for n in names if n != "good")]
    return {n: np.flatnonzero(test.labels == names.index(n)) for n in order}


def _curves_section(curves: Curves | None, note: str) -> str:
    uri = curves_uri(curves) if curves else None
    if uri is None:
        return ""
    return (
        f'<section id="training"><h2>Training</h2><p class=note>{escape(note)}</p>'
        f'<div class="figs"><img src="{uri}" alt="training curves"></div></section>'
    )


def evaluation_sections(
    metrics: dict[str, Any],
    test: Any,
    published: dict[str, dict[str, tuple[float, str]]],
    method: str,
    gallery: Gallery | None,
    gallery_note: str = "",
) -> list[str]:
    """Metrics, curves and histogram, the per-type table and the gallery of one run."""
    labels = np.asarray(test.is_anomalous, int)
    scores = np.asarray(metrics["scores"], float)
    threshold = (metrics.get("calibrated") or {}).get("threshold")
    uri = score_curves_uri(labels, scores, metrics["auroc"], metrics["ap"], threshold)
    t_note = (
        "the dashed line is the model's threshold, set on held-out normal images"
        if threshold is not None
        else "the model has no calibrated threshold"
    )
    out = [
        metrics_table(metrics, method, published),
        per_type_table(metrics, _by_type(test)),
        '<section id="curves"><h2>Curves</h2><div class="figs">'
        f'<img src="{uri}" alt="ROC, precision-recall and score histogram"></div>'
        f"<p class=note>Image scores of the good and the defective test images; {t_note}.</p>"
        "</section>",
    ]
    if gallery is not None:
        out.append(gallery_html(gallery))
    elif gallery_note:
        note = f"<p class=note>{escape(gallery_note)}</p>"
        out.append(f'<section id="gallery"><h2>Gallery</h2>{note}</section>')
    return out


def _stamp() -> str:
    import reconad

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"written by reconad {reconad.__version__} on {now}"


def write_test_report(
    path: str | Path,
    det: Any,
    test: Any,
    metrics: dict[str, Any],
    config: dict[str, Any],
    data: str,
    dataset_key: str | None = None,
    curves: Curves | None = None,
    curves_note: str = "",
    gallery_size: int = 4,
) -> Path:
    """Write the page of one evaluation (``reconad test``) and return its path.

    Args:
        path: the HTML file to write (atomically).
        det: the fitted detector (draws the gallery).
        test: the labelled test set ``metrics`` was computed on, in the same order.
        metrics: ``reconad.evaluate.evaluate``'s dict, the one written to ``metrics.json``.
        config: the model's ``config.json`` contents (the model card).
        data: how to name the test data on the page (its folder).
        dataset_key: ``reference.industrial_key`` of the data, for published numbers.
        curves: training curves ``{"stage/loss": (steps, values)}``, drawn when given.
        curves_note: where the curves come from.
        gallery_size: images shown per gallery group.
    """
    from reconad.reference import published_industrial

    published = published_industrial(dataset_key) if dataset_key else {}
    gallery = build_gallery(det, test, np.asarray(metrics["scores"]), gallery_size)
    body = [model_card(config, metrics, data)]
    body += evaluation_sections(metrics, test, published, config["method"], gallery)
    title = f"reconad report: {config['method']} on {Path(data).name or data}"
    return _write_page(path, title, body, curves, curves_note)


def write_benchmark_report(
    path: str | Path,
    summary: dict[str, Any],
    record: dict[str, Any],
    test: Any,
    config: dict[str, Any],
    det: Any | None = None,
    curves: Curves | None = None,
    curves_note: str = "",
    gallery_size: int = 4,
) -> Path:
    """Write the page of an industrial benchmark folder: the summary over seeds, then one
    seed (``record``, its JSON as written) in detail, with a gallery when its fitted
    detector ``det`` is given (kept by ``--save-models``)."""
    from reconad.reference import industrial_key, published_industrial

    key = industrial_key(record["dataset"], record.get("category_path"))
    published = published_industrial(key) if key else {}
    method = record["method"]
    data = record.get("category_path") or record["dataset"]
    gallery = None
    if det is not None:
        gallery = build_gallery(det, test, np.asarray(record["scores"]), gallery_size)
    body = [model_card(config, record, data), summary_table(summary, published.get(method, {}))]
    body.append(f'<h2 class="seed">Seed {record["seed"]} in detail</h2>')
    body += evaluation_sections(
        record, test, published, method, gallery,
        "No gallery: the fitted models were not kept (run the benchmark with --save-models).",
    )  # fmt: skip
    title = f"reconad benchmark: {method} on {record['dataset']}"
    return _write_page(path, title, body, curves, curves_note)


def _write_page(
    path: str | Path, title: str, body: list[str], curves: Curves | None, curves_note: str
) -> Path:
    """Close ``body`` with the training curves and write the page atomically."""
    body.append(_curves_section(curves, curves_note))
    html = page(title, _stamp(), body)
    path = Path(path)
    atomic_write(path, lambda p: p.write_text(html, encoding="utf-8"))
    return path


def history_curves(config: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-epoch mean losses from a model's ``config.json`` training history, as curves
    ``{"<stage>/loss": (steps at each epoch's end, losses)}``: what every model keeps, for
    when no run log was written."""
    hist = (config.get("training") or {}).get("history") or []
    steps, out = 0, {}
    for h in hist:
        if not isinstance(h, dict) or "loss" not in h:
            continue
        steps += int(h.get("steps") or 0)
        xs, ys = out.setdefault(f"{h.get('stage', 'train')}/loss", ([], []))
        xs.append(steps)
        ys.append(float(h["loss"]))
    return {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in out.items()}


def config_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """A model card's fields from a benchmark seed record, when the model was not kept."""
    from reconad.methods import get_method

    settings = record.get("settings") or {}
    cal = record.get("calibrated") or {}
    try:
        provenance = get_method(record["method"]).provenance
    except KeyError:
        provenance = ""
    return {
        "method": record["method"],
        "preset": record.get("preset"),
        "provenance": provenance,
        "hparams": record.get("hparams") or {},
        "input": record.get("input") or {},
        "calibration": {
            "threshold": cal.get("threshold", float("nan")),
            "target_fpr": settings.get("target_fpr"),
            "n_val": record.get("n_val"),
        },
        "scoring": {"image_score": settings.get("image_score", "native")},
        "training": {
            "seed": record.get("seed"),
            "n_train": record.get("n_train"),
            "seconds": record.get("fit_seconds"),
            "steps": record.get("steps"),
            "images_seen": record.get("images_seen"),
            "epochs_scale": settings.get("epochs_scale"),
        },
        "versions": record.get("versions") or {},
    }

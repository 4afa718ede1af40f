"""Figures for the HTML report, each returned as a PNG ``data:`` URI, so the page is one file.

Curves (ROC, precision-recall, score histograms, loss curves) are drawn with matplotlib on
its Agg backend; gallery panels (an image, a map in colour, a map over its image with the
mask's outline) are built as arrays and encoded with Pillow, which is much faster than a
matplotlib figure per thumbnail.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

GOOD, BAD, THRESH = "#2b8cbe", "#e6550d", "#222222"
OUTLINE = np.array([0, 255, 255], np.uint8)  # the ground-truth mask's outline: cyan


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_uri(fig) -> str:
    """Encode a matplotlib figure as a PNG data URI and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return _uri(buf.getvalue())


def array_uri(rgb: np.ndarray, max_side: int = 256) -> str:
    """Encode an ``(H, W)`` or ``(H, W, 3)`` uint8 array as a PNG data URI (shrunk so its
    longer side is at most ``max_side``, to keep the page small)."""
    img = Image.fromarray(np.ascontiguousarray(rgb))
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return _uri(buf.getvalue())


def score_curves_uri(
    labels: np.ndarray, scores: np.ndarray, auroc: float, ap: float, threshold: float | None
) -> str:
    """ROC, precision-recall and the score histograms of good and defective images (with
    the threshold drawn), side by side (labels: 1 = defect).

    ``auroc`` and ``ap`` (in %) are the metrics' own values, so the legends repeat the
    table's numbers instead of recomputing them.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    prec, rec, _ = precision_recall_curve(labels, scores)
    fig, (a, b, c) = plt.subplots(
        1, 3, figsize=(13.5, 3.7), gridspec_kw={"width_ratios": [1, 1, 1.7]}
    )
    a.plot(fpr, tpr, lw=2, color=BAD, label=f"AUROC {auroc:.2f}%")
    a.plot([0, 1], [0, 1], "--", color="gray", lw=1)
    a.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    a.legend(loc="lower right")
    b.plot(rec, prec, lw=2, color=BAD, label=f"AP {ap:.2f}%")
    b.axhline(float(np.mean(labels)), ls="--", color="gray", lw=1, label="chance")
    b.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    b.legend(loc="lower left")
    bins = np.histogram_bin_edges(scores, bins=40)
    for sel, col, name in ((labels == 0, GOOD, "good"), (labels == 1, BAD, "defective")):
        kw = {"bins": bins, "color": col}
        c.hist(scores[sel], alpha=0.35, histtype="stepfilled", **kw)
        c.hist(scores[sel], lw=1.8, histtype="step", label=f"{name} ({int(sel.sum())})", **kw)
    if threshold is not None and np.isfinite(threshold):
        c.axvline(threshold, color=THRESH, lw=2, ls="--", label=f"threshold {threshold:.4g}")
    c.set(xlabel="image score (higher = more anomalous)", ylabel="images", title="scores")
    c.legend()
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_uri(fig)


def _quantity(name: str) -> tuple[str, str]:
    """``(quantity, series label)`` of a curve name: ``"draem/loss"`` -> ``("loss",
    "draem")``, ``"draem/lr/recon"`` -> ``("lr", "draem/recon")``, ``"loss"`` -> itself."""
    parts = name.split("/")
    if len(parts) == 1:
        return name, name
    q = 1 if len(parts) > 2 else len(parts) - 1
    return parts[q], "/".join(parts[:q] + parts[q + 1 :])


def _smooth(values: np.ndarray, n: int) -> np.ndarray:
    kernel = np.ones(n) / n
    return np.convolve(np.pad(values, (n // 2, n - 1 - n // 2), mode="edge"), kernel, "valid")


def curves_uri(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> str | None:
    """Training curves, one panel per quantity (``"stage/loss"`` and ``"other/loss"`` share
    the ``loss`` panel; ``lr`` gets its own), steps on x; None if there is nothing to draw.
    Long noisy series (per-step losses) are drawn faintly with a moving average on top."""
    panels: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for name, (steps, values) in curves.items():
        steps, values = np.asarray(steps, float), np.asarray(values, float)
        if len(values):
            qty, label = _quantity(name)
            panels.setdefault(qty, []).append((label, steps, values))
    if not panels:
        return None
    keys = sorted(panels, key=lambda q: (q != "loss", q))[:6]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, qty in zip(axes[0], keys, strict=True):
        for stage, steps, values in panels[qty]:
            if len(values) > 200 and qty != "lr":
                line = ax.plot(steps, values, lw=0.6, alpha=0.3)[0]
                n = max(5, len(values) // 50)
                ax.plot(steps, _smooth(values, n), lw=1.8, color=line.get_color(), label=stage)
                continue
            ax.plot(steps, values, lw=1.5, marker="." if len(values) < 60 else None, label=stage)
        finite = np.concatenate([v[np.isfinite(v)] for _, _, v in panels[qty]])
        if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 30:
            ax.set_yscale("log")
        ax.set(xlabel="optimiser step", title=qty)
        ax.grid(alpha=0.3)
        if len(panels[qty]) > 1 or panels[qty][0][0] != qty:
            ax.legend(fontsize=8)
    return figure_uri(fig)


# ------------------------------------------------------------------------ gallery panels


def to_rgb(img: np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image in [0, 1] (or uint8) as ``(H, W, 3)`` uint8 (gray repeated;
    channel counts other than 1 and 3 are averaged)."""
    a = np.asarray(img, dtype=np.float32)
    if np.asarray(img).dtype == np.uint8:
        a = a / 255.0
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0) if a.shape[0] == 3 else a.mean(0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def colour(amap: np.ndarray, vmin: float, vmax: float, cmap: str = "inferno") -> np.ndarray:
    """An ``(H, W)`` map coloured on a fixed scale, ``(H, W, 3)`` uint8."""
    norm = np.clip((np.asarray(amap, np.float32) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    return (matplotlib.colormaps[cmap](norm)[..., :3] * 255).round().astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a bool mask (set pixels with an unset 4-neighbour)."""
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask.astype(bool) & ~inner


def overlay(
    rgb: np.ndarray, amap: np.ndarray, vmin: float, vmax: float, mask: np.ndarray | None
) -> np.ndarray:
    """The map over its image (more opaque where the map is higher), the mask outlined."""
    norm = np.clip((amap - vmin) / max(vmax - vmin, 1e-12), 0, 1)[..., None]
    alpha = 0.15 + 0.6 * norm
    out = (1 - alpha) * rgb + alpha * colour(amap, vmin, vmax)
    out = out.round().astype(np.uint8)
    if mask is not None and mask.any():
        edge = outline(mask)
        thick = edge.copy()  # 2 px wide, so it stays visible when the thumbnail shrinks
        thick[1:] |= edge[:-1]
        thick[:, 1:] |= edge[:, :-1]
        out[thick] = OUTLINE
    return out

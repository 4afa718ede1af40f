"""PNG figures: ROC curves, grids of inputs / intermediate images / error maps, heat maps.

Matplotlib runs on its non-interactive Agg backend, so this works on machines without a
screen. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from reconad.serialize import atomic_write  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def save_roc(labels: np.ndarray, scores: np.ndarray, path: Path, title: str = "") -> Path:
    """Plot the ROC curve of image scores (labels: 1 = anomalous) with its AUROC."""
    from reconad.metrics import image_auroc

    fpr, tpr, _ = roc_curve(labels, scores)
    auc = image_auroc(labels, scores)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, lw=2, label=f"AUROC = {100 * auc:.1f}%")
    ax.plot([0, 1], [0, 1], "--", color="gray", lw=1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title or "ROC")
    ax.legend(loc="lower right")
    return _save(fig, path)


def _show(ax, img: np.ndarray, cmap: str | None = None, vmax: float | None = None) -> None:
    """Show a (C, H, W) image or an (H, W) map on an axis, without ticks."""
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    if img.ndim == 2 and cmap is None:
        cmap = "gray"
    ax.imshow(
        np.clip(img, 0, None) if vmax else np.clip(img, 0, 1),
        cmap=cmap,
        vmin=0,
        vmax=vmax if vmax else 1,
    )
    ax.set_xticks([])
    ax.set_yticks([])


MAP_KEYS = ("error", "map", "anomaly_map", "residual")
# signed images (e.g. DDR-ID's residual component x_r): drawn around 0 on a diverging scale
SIGNED_KEYS = ("x_r",)


def _show_signed(ax, img: np.ndarray, vmax: float) -> None:
    """Show a signed (C, H, W) image, averaged over channels, blue < 0 < red."""
    ax.imshow(img.mean(axis=0) if img.ndim == 3 else img, cmap="coolwarm", vmin=-vmax, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])


def save_extras_grid(
    extras: dict[str, np.ndarray],
    path: Path,
    scores: np.ndarray | None = None,
    labels: list[str] | None = None,
    n: int = 8,
    overlay: np.ndarray | None = None,
) -> Path:
    """One row per image, one column per named intermediate image (``extras``).

    Maps (names in ``MAP_KEYS``) are drawn with a shared colour scale, so rows compare;
    signed images (``SIGNED_KEYS``) on a shared diverging scale centred at 0.
    With ``overlay`` (anomaly maps ``(N, H, W)`` at the size of ``extras["input"]``), a last
    column shows each map over its input, so one sees where the image was flagged.
    """
    keys = list(extras)
    n = min(n, len(next(iter(extras.values()))))
    vmax = max((float(np.max(extras[k][:n])) for k in keys if k in MAP_KEYS), default=None)
    smax = {k: max(float(np.abs(extras[k][:n]).max()), 1e-12) for k in keys if k in SIGNED_KEYS}
    show_overlay = overlay is not None and "input" in extras
    cols = len(keys) + int(show_overlay)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    if show_overlay:
        top = max(float(np.max(overlay[:n])), 1e-12)
        for i in range(n):
            _show(axes[i, -1], extras["input"][i])
            axes[i, -1].imshow(overlay[i], cmap="inferno", alpha=0.5, vmin=0, vmax=top)
        axes[0, -1].set_title("map on input", fontsize=8)
    for i in range(n):
        for j, k in enumerate(keys):
            is_map = k in MAP_KEYS
            if k in smax:
                _show_signed(axes[i, j], extras[k][i], smax[k])
            else:
                _show(
                    axes[i, j],
                    extras[k][i],
                    cmap="inferno" if is_map else None,
                    vmax=(vmax or 1.0) if is_map else None,
                )
            if i == 0:
                axes[i, j].set_title(k, fontsize=8)
        text = []
        if labels is not None:
            text.append(labels[i])
        if scores is not None:
            text.append(f"{scores[i]:.3g}")
        if text:
            axes[i, 0].set_ylabel("\n".join(text), fontsize=7)
    return _save(fig, path)


def save_heatmap(image: np.ndarray, amap: np.ndarray, path: Path, title: str = "") -> Path:
    """The image with its anomaly map overlaid (map at the image's own size)."""
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    _show(axes[0], image)
    _show(axes[1], image)
    axes[1].imshow(amap, cmap="inferno", alpha=0.5)
    axes[0].set_title("input", fontsize=8)
    axes[1].set_title(title or "anomaly map", fontsize=8)
    return _save(fig, path)

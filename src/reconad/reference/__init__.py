"""Published numbers, transcribed from the papers, kept as data beside the code."""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def _rows() -> list[dict[str, str]]:
    text = resources.files(__package__).joinpath("published.csv").read_text()
    return list(csv.DictReader(text.splitlines()))


def published_auroc(method: str, dataset: str) -> dict[str, float]:
    """Published AUROC (%) by class (``"0"``, ``"1"``, ..., ``"mean"``); empty if none."""
    return {
        r["class"]: float(r["auroc"])
        for r in _rows()
        if r["method"] == method and r["dataset"] == dataset
    }


def published_source(method: str, dataset: str) -> str | None:
    """Where the published numbers of ``method`` on ``dataset`` come from."""
    for r in _rows():
        if r["method"] == method and r["dataset"] == dataset:
            return r["source"]
    return None


#: how published.csv names an industrial metric -> the key our records use
_INDUSTRIAL_METRICS = {"image": "auroc", "pixel": "pixel_auroc", "pro": "aupro"}


def industrial_key(name: str, path: str | None = None) -> str | None:
    """The published.csv name of an industrial data set (``magnetic-tile``,
    ``mvtec/<category>``), from its name or its folder; None if it is not one we have.

    A folder counts as an MVTec AD category when its parent folder is named ``mvtec``.
    """
    from pathlib import Path

    for cand in (name, path):
        if not cand:
            continue
        p = Path(cand)
        if p.name == "magnetic-tile":
            return "magnetic-tile"
        if p.parent.name.lower() == "mvtec":
            return f"mvtec/{p.name}"
    return None


def published_industrial(dataset: str) -> dict[str, dict[str, tuple[float, str]]]:
    """Published numbers on an industrial set (``industrial_key``'s form), by method:
    ``{method: {"auroc" | "pixel_auroc" | "aupro": (value %, source)}}``; empty if none."""
    out: dict[str, dict[str, tuple[float, str]]] = {}
    if dataset.startswith("mvtec/"):
        cat = dataset.split("/", 1)[1]
        for r in _rows():
            key = {"mvtec": "auroc", "mvtec-pixel": "pixel_auroc"}.get(r["dataset"])
            if key and r["class"] == cat:
                out.setdefault(r["method"], {})[key] = (float(r["auroc"]), r["source"])
        return out
    for r in _rows():
        key = _INDUSTRIAL_METRICS.get(r["class"])
        if r["dataset"] == dataset and key:
            out.setdefault(r["method"], {})[key] = (float(r["auroc"]), r["source"])
    return out

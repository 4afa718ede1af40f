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

"""GTSRB, the German Traffic Sign Recognition Benchmark, in its official layout.

Training split (``GTSRB_Final_Training_Images.zip``, unpacked)::

    GTSRB/Final_Training/Images/00000/00000_00000.ppm ...
    GTSRB/Final_Training/Images/00000/GT-00000.csv

Test split (``GTSRB_Final_Test_Images.zip`` plus the labels of ``GTSRB_Final_Test_GT.zip``)::

    GTSRB/Final_Test/Images/00000.ppm ...
    GT-final_test.csv   (in Final_Test/Images/, in GTSRB/ or beside GTSRB/)

Each CSV (semicolon-separated) gives per file its size and the sign's box ``Roi.X1``,
``Roi.Y1``, ``Roi.X2``, ``Roi.Y2``; test CSVs also give ``ClassId``. Every image is cropped
to its box and resized (bilinear) to ``size``, as Deep SVDD did for its stop signs. The
box is taken as Pillow's ``crop((x1, y1, x2, y2))``: the dataset's readme does not say
whether x2/y2 are inclusive, which changes the crop by at most one pixel. The label of a
training image is its class folder's number; the class names are the official sign names.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from reconad.data.imageset import DataError, ImageSet

__all__ = ["GTSRB_CLASSES", "find_gtsrb", "read_gtsrb"]

GTSRB_CLASSES = [
    "speed limit 20", "speed limit 30", "speed limit 50", "speed limit 60",
    "speed limit 70", "speed limit 80", "end of speed limit 80", "speed limit 100",
    "speed limit 120", "no passing", "no passing over 3.5 t", "right of way at next crossing",
    "priority road", "yield", "stop", "no vehicles", "over 3.5 t prohibited", "no entry",
    "general caution", "dangerous curve left", "dangerous curve right", "double curve",
    "bumpy road", "slippery road", "road narrows on the right", "road work",
    "traffic signals", "pedestrians", "children crossing", "bicycles crossing",
    "beware of ice/snow", "wild animals crossing", "end of all limits", "turn right ahead",
    "turn left ahead", "ahead only", "go straight or right", "go straight or left",
    "keep right", "keep left", "roundabout mandatory", "end of no passing",
    "end of no passing over 3.5 t",
]  # fmt: skip

BOX = ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")
TEST_CSV = "GT-final_test.csv"


def find_gtsrb(root: str | Path, split: str) -> Path | None:
    """The folder holding ``Final_Training``/``Final_Test`` under ``root``, or None."""
    sub = "Final_Training" if split == "train" else "Final_Test"
    for cand in (Path(root), Path(root) / "GTSRB", Path(root) / "gtsrb"):
        if (cand / sub / "Images").is_dir():
            return cand
    return None


def _read_csv(path: Path, need: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    except OSError as err:
        raise DataError(f"{path}: cannot read the annotation file ({err})") from err
    missing = [c for c in need if rows and c not in rows[0]]
    if not rows or missing:
        what = f"lacks column(s) {missing}" if missing else "has no rows"
        raise DataError(f"{path}: GTSRB annotation file {what}; expected {list(need)}")
    return rows


def _crop(path: Path, row: dict[str, str], csv_path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image, cropped to its box and resized: uint8 ``(3, h, w)``."""
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: listed in {csv_path.name} but not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: unreadable or truncated image ({err})") from err
    try:
        x1, y1, x2, y2 = (int(row[k]) for k in BOX)
    except (TypeError, ValueError):
        raise DataError(f"{csv_path}: {path.name} has a non-integer box") from None
    w, h = img.size
    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
        raise DataError(
            f"{csv_path}: the box ({x1}, {y1}, {x2}, {y2}) of {path.name} lies outside its "
            f"{w}x{h} image (or is empty)"
        )
    img = img.crop((x1, y1, x2, y2)).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _items(folder: Path, split: str) -> list[tuple[Path, dict[str, str], Path, int]]:
    """(image file, CSV row, CSV file, label) of every image of a split."""
    items = []
    if split == "train":
        images = folder / "Final_Training" / "Images"
        classes = sorted(p for p in images.iterdir() if p.is_dir() and p.name.isdigit())
        if not classes:
            raise DataError(f"{images}: no class folders (00000, 00001, ...) found")
        for cdir in classes:
            if not any(p.suffix.lower() == ".ppm" for p in cdir.iterdir()):
                raise DataError(f"{cdir}: empty class folder (no .ppm images)")
            csv_path = cdir / f"GT-{cdir.name}.csv"
            if not csv_path.is_file():
                raise DataError(f"{cdir}: the annotation file {csv_path.name} is missing")
            for row in _read_csv(csv_path, ("Filename", *BOX)):
                items.append((cdir / row["Filename"], row, csv_path, int(cdir.name)))
        return items
    images = folder / "Final_Test" / "Images"
    places = [images / TEST_CSV, folder / TEST_CSV, folder.parent / TEST_CSV]
    csv_path = next((p for p in places if p.is_file()), None)
    if csv_path is None:
        raise DataError(
            f"{images}: the test labels {TEST_CSV} (from GTSRB_Final_Test_GT.zip) are missing; "
            f"looked in {[str(p.parent) for p in places]}"
        )
    for row in _read_csv(csv_path, ("Filename", *BOX, "ClassId")):
        try:
            label = int(row["ClassId"])
        except ValueError:
            raise DataError(
                f"{csv_path}: {row['Filename']} has ClassId {row['ClassId']!r}"
            ) from None
        items.append((images / row["Filename"], row, csv_path, label))
    return items


def read_gtsrb(
    root: str | Path, split: str = "train", size: int | tuple[int, int] = 32
) -> ImageSet:
    """Read GTSRB's official training or test layout, each sign cropped to its box.

    Args:
        root: the ``GTSRB`` folder (holding ``Final_Training``/``Final_Test``) or its parent.
        split: ``"train"`` or ``"test"``.
        size: output ``(h, w)`` (or one int); 32x32 as in Deep SVDD's experiment.

    Returns:
        RGB ImageSet with labels (class ids 0-42), the official class names, paths and the
        size of each cropped box in ``orig_sizes``.

    Raises:
        DataError: the layout is not there, a CSV is missing or malformed, a class folder
            is empty, a listed image is missing or unreadable, or a box lies outside it.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    h, w = (size, size) if isinstance(size, int) else size
    folder = find_gtsrb(root, split)
    if folder is None:
        sub = "Final_Training" if split == "train" else "Final_Test"
        raise DataError(f"{root}: no GTSRB {sub}/Images folder here or in {root}/GTSRB")
    items = _items(folder, split)
    images = np.empty((len(items), 3, h, w), dtype=np.uint8)
    boxes = []
    it = enumerate(items)
    if len(items) > 2000:
        it = track(it, total=len(items), description=f"Reading GTSRB {split}", transient=True)
    for i, (path, row, csv_path, _) in it:
        images[i] = _crop(path, row, csv_path, (h, w))
        boxes.append(
            (int(row["Roi.Y2"]) - int(row["Roi.Y1"]), int(row["Roi.X2"]) - int(row["Roi.X1"]))
        )
    labels = np.array([it_[3] for it_ in items], dtype=np.int64)
    n = max(int(labels.max()) + 1, len(GTSRB_CLASSES))
    names = GTSRB_CLASSES + [str(i) for i in range(len(GTSRB_CLASSES), n)]
    return ImageSet(
        images=images,
        labels=labels,
        class_names=names,
        paths=[str(p) for p, *_ in items],
        orig_sizes=boxes,
        meta={"source": str(folder), "layout": "gtsrb"},
    )

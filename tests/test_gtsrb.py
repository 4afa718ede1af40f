"""The GTSRB reader, on a small tree in the official layout written here (PPM + CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reconad.data.datasets import load_dataset
from reconad.data.gtsrb import GTSRB_CLASSES, read_gtsrb
from reconad.data.imageset import DataError

HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"


def _sign(path: Path, w: int, h: int, box: tuple[int, int, int, int]) -> None:
    """A blue image with a red sign exactly inside ``box`` (Pillow crop convention)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 2] = 255
    x1, y1, x2, y2 = box
    a[y1:y2, x1:x2] = (255, 0, 0)
    Image.fromarray(a).save(path)  # .ppm suffix -> PPM


def _row(name: str, w: int, h: int, box, cid: int) -> str:
    return ";".join(map(str, (name, w, h, *box, cid))) + "\n"


def _write_gtsrb(root: Path, classes=(0, 14), per_class: int = 3) -> Path:
    top = root / "GTSRB"
    rows_test = HEADER
    for cid in classes:
        cdir = top / "Final_Training" / "Images" / f"{cid:05d}"
        cdir.mkdir(parents=True)
        rows = HEADER
        for j in range(per_class):
            w, h, box = 40 + j, 36 + 2 * j, (5, 6, 30 + j, 28)
            name = f"00000_{j:05d}.ppm"
            _sign(cdir / name, w, h, box)
            rows += _row(name, w, h, box, cid)
        (cdir / f"GT-{cid:05d}.csv").write_text(rows)
    tdir = top / "Final_Test" / "Images"
    tdir.mkdir(parents=True)
    for j, cid in enumerate(classes):
        name = f"{j:05d}.ppm"
        _sign(tdir / name, 33, 35, (4, 5, 29, 31))
        rows_test += _row(name, 33, 35, (4, 5, 29, 31), cid)
    (top / "GT-final_test.csv").write_text(rows_test)
    return top


def test_reads_training_layout_crops_to_the_box_and_resizes(tmp_path):
    top = _write_gtsrb(tmp_path)
    data = read_gtsrb(top, "train", size=32)
    assert data.images.shape == (6, 3, 32, 32)
    assert data.labels.tolist() == [0, 0, 0, 14, 14, 14]
    assert data.class_names[14] == "stop" and len(data.class_names) == len(GTSRB_CLASSES) == 43
    # cropped exactly to the red sign: no blue background survives the crop
    assert (data.images[:, 0] == 255).all() and (data.images[:, 2] == 0).all()
    assert data.orig_sizes[1] == (28 - 6, 31 - 5)  # the box's (h, w)
    assert data.paths[0].endswith("00000/00000_00000.ppm")


def test_reads_test_split_and_loads_by_name(tmp_path):
    _write_gtsrb(tmp_path)
    test = load_dataset("gtsrb", "test", root=tmp_path, download=False)
    assert test.images.shape == (2, 3, 32, 32)
    assert test.labels.tolist() == [0, 14]
    assert test.meta["dataset"] == "gtsrb"
    train = load_dataset("gtsrb", "train", root=tmp_path / "GTSRB")
    assert len(train) == 6


def test_missing_data_set_says_there_is_no_download(tmp_path):
    with pytest.raises(DataError, match="no download for 'gtsrb'"):
        load_dataset("gtsrb", "train", root=tmp_path)


def test_missing_csv_is_named(tmp_path):
    top = _write_gtsrb(tmp_path)
    (top / "Final_Training" / "Images" / "00014" / "GT-00014.csv").unlink()
    with pytest.raises(DataError, match="GT-00014.csv is missing"):
        read_gtsrb(top, "train")


def test_box_outside_the_image_is_an_error(tmp_path):
    top = _write_gtsrb(tmp_path)
    csv = top / "Final_Training" / "Images" / "00000" / "GT-00000.csv"
    lines = csv.read_text().splitlines()
    lines[1] = _row("00000_00000.ppm", 40, 36, (5, 6, 41, 28), 0).strip()  # x2 > width 40
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"00000_00000.ppm lies outside its 40x36 image"):
        read_gtsrb(top, "train")


def test_empty_class_folder_is_an_error(tmp_path):
    top = _write_gtsrb(tmp_path)
    (top / "Final_Training" / "Images" / "00007").mkdir()
    with pytest.raises(DataError, match="00007: empty class folder"):
        read_gtsrb(top, "train")


def test_listed_but_missing_image_and_missing_test_labels(tmp_path):
    top = _write_gtsrb(tmp_path)
    (top / "Final_Training" / "Images" / "00000" / "00000_00001.ppm").unlink()
    with pytest.raises(DataError, match="00000_00001.ppm: listed in GT-00000.csv but not found"):
        read_gtsrb(top, "train")
    (top / "GT-final_test.csv").unlink()
    with pytest.raises(DataError, match="GT-final_test.csv"):
        read_gtsrb(top, "test")


def test_malformed_csv_names_the_missing_columns(tmp_path):
    top = _write_gtsrb(tmp_path)
    csv = top / "Final_Training" / "Images" / "00000" / "GT-00000.csv"
    csv.write_text("Filename;Width;Height\n00000_00000.ppm;40;36\n")
    with pytest.raises(DataError, match="lacks column"):
        read_gtsrb(top, "train")

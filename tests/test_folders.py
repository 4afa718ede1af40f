"""Image-file readers: single files, lists, flat folders, MVTec AD."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reconad.data import DataError, folders
from reconad.data.folders import (
    load_image,
    read_flat_folder,
    read_image_files,
    read_mvtec,
)
from tests.conftest import save, shared

pytestmark = pytest.mark.usefixtures("private_cache")
RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- load_image


def test_load_image_modes(tmp_path):
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert load_image(tmp_path / "rgb.png").shape == (3, 5, 7)
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), rgb.transpose(2, 0, 1))
    gray = load_image(tmp_path / "rgb.png", channels=1)
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(gray[0], luma)  # ITU-R 601-2 luma, as documented
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgb.transpose(2, 0, 1))
    Image.fromarray(luma).convert("LA").save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").shape == (1, 5, 7)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (3, 5, 7)
    Image.fromarray(luma).save(tmp_path / "l.png")
    three = load_image(tmp_path / "l.png", channels=3)
    assert three.shape == (3, 5, 7) and (three == luma).all()


def test_load_image_16_bit_scaled(tmp_path):
    wide = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 257 * 20).astype(np.uint16)
    wide[0, 0] = 65535
    Image.fromarray(wide).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = load_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.shape == (1, 3, 4)
    assert out[0, 0, 0] == 255 and out[0, 0, 1] == 20 and out[0, 2, 3] == 220


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_image(tmp_path, ext):
    path = save(tmp_path / f"good.{ext}", 40, 40)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match=rf"cut.{ext}: unreadable or truncated image"):
        load_image(cut)


def test_non_image_and_missing_file(tmp_path):
    (tmp_path / "notes.png").write_text("this is not a picture")
    with pytest.raises(DataError, match=r"notes.png: not an image file"):
        load_image(tmp_path / "notes.png")
    with pytest.raises(DataError, match=r"gone.png: image file not found"):
        load_image(tmp_path / "gone.png")
    with pytest.raises(ValueError, match="channels must be"):
        load_image(tmp_path / "gone.png", channels=4)


# --------------------------------------------------------------------------- lists, flat folders


def test_sizes_differ_needs_size(tmp_path):
    a, b = save(tmp_path / "a.png", 8, 6), save(tmp_path / "b.png", 10, 12)
    with pytest.raises(DataError, match=r"a.png is 8x6, .*b.png is 10x12 .*pass size=\(h, w\)"):
        read_image_files([a, b])
    data = read_image_files([a, b], size=(4, 5))
    assert data.images.shape == (2, 3, 4, 5)
    assert data.orig_sizes == [(8, 6), (10, 12)] and data.paths == [str(a), str(b)]


def test_mixed_gray_and_colour(tmp_path):
    gray, colour = save(tmp_path / "g.png", mode="L"), save(tmp_path / "c.png")
    with pytest.raises(
        DataError, match=r"g.png is gray.*c.png is colour.*channels=1 or channels=3"
    ):
        read_image_files([colour, gray])
    assert read_image_files([colour, gray], channels=3).images.shape == (2, 3, 8, 6)
    assert read_image_files([gray, colour], channels=1).images.shape == (2, 1, 8, 6)


def test_no_files_and_labels(tmp_path):
    with pytest.raises(DataError, match="no image files given"):
        read_image_files([])
    a = save(tmp_path / "a.png")
    data = read_image_files([a, a], labels=[1, 0], class_names=["x", "y"])
    assert data.labels.tolist() == [1, 0] and data.class_names == ["x", "y"]


def test_progress_bar_for_many_files(tmp_path, monkeypatch):
    calls = []

    def spy(seq, **kwargs):
        calls.append(kwargs)
        return seq

    monkeypatch.setattr(folders, "track", spy)
    monkeypatch.setattr(folders, "PROGRESS_MIN_FILES", 2)
    a = save(tmp_path / "a.png")
    read_image_files([a, a])
    assert calls == []
    read_image_files([a, a, a])
    assert calls and calls[0]["transient"] is True and calls[0]["total"] == 3


def test_flat_folder_sorted_case_insensitive(tmp_path):
    for name in ["b.PNG", "a.Jpg", "c.bmp", "d.tiff", "e.webp", "f.ppm"]:
        save(tmp_path / name, mode="RGB")
    (tmp_path / "readme.txt").write_text("not an image")
    save(tmp_path / "._a.jpg")  # macOS resource fork: hidden, skipped
    (tmp_path / "sub").mkdir()
    data = read_flat_folder(tmp_path)
    names = [Path(p).name for p in data.paths]
    assert names == ["a.Jpg", "b.PNG", "c.bmp", "d.tiff", "e.webp", "f.ppm"]
    assert data.labels is None


def test_flat_folder_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match=r"nope: image folder not found"):
        read_flat_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"empty: image folder has no image files"):
        read_flat_folder(tmp_path / "empty")
    with pytest.raises(DataError, match=r"notes.txt: image folder is not a folder"):
        read_flat_folder(tmp_path / "empty" / "notes.txt")


# --------------------------------------------------------------------------- MVTec AD layout


def mask(path: Path, h: int, w: int, box=None, soft: bool = False) -> Path:
    """A mask PNG: zero, with ``box`` (y0, y1, x0, x1) at 255, and a soft 127/128 edge."""
    array = np.zeros((h, w), np.uint8)
    if box:
        y0, y1, x0, x1 = box
        array[y0:y1, x0:x1] = 255
        if soft:
            array[y1, x0:x1] = 128  # counts (>= 128)
            array[y1 + 1, x0:x1] = 127  # does not
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def mvtec(tmp_path) -> Path:
    root = tmp_path / "bottle"
    for i, (h, w) in enumerate([(10, 12), (11, 9), (10, 12)]):
        save(root / "train" / "good" / f"{i:03d}.png", h, w, mode="L")
    save(root / "test" / "good" / "000.png", 10, 12, mode="L")
    save(root / "test" / "good" / "001.png", 12, 10, mode="L")
    save(root / "test" / "crack" / "000.png", 10, 12, mode="L")
    save(root / "test" / "crack" / "001.png", 9, 9, mode="L")
    save(root / "test" / "broken" / "000.png", 10, 12, mode="L")
    mask(root / "ground_truth" / "crack" / "000_mask.png", 10, 12, (2, 5, 3, 7), soft=True)
    mask(root / "ground_truth" / "crack" / "001_mask.png", 9, 9)  # empty: still anomalous
    mask(root / "ground_truth" / "broken" / "000_mask.png", 10, 12, (0, 10, 0, 1))
    return root


def test_mvtec_test_split(mvtec):
    data = read_mvtec(mvtec, "test", size=(8, 8))
    assert data.class_names == ["good", "broken", "crack"]
    assert data.labels.tolist() == [0, 0, 1, 2, 2]
    assert data.images.shape == (5, 1, 8, 8)
    assert data.orig_sizes == [(10, 12), (12, 10), (10, 12), (10, 12), (9, 9)]
    assert data.masks[0] is None and data.masks[1] is None
    crack = data.masks[3]
    assert crack.dtype == bool and crack.shape == (10, 12)  # the original size
    expected = np.zeros((10, 12), bool)
    expected[2:6, 3:7] = True  # the box and its 128 edge row; the 127 row is out
    np.testing.assert_array_equal(crack, expected)
    assert data.masks[4].shape == (9, 9) and not data.masks[4].any()
    assert data.is_anomalous.tolist() == [False, False, True, True, True]


def test_mvtec_train_split_and_sizes(mvtec):
    with pytest.raises(DataError, match=r"differ in size.*pass size="):
        read_mvtec(mvtec, "train")
    data = read_mvtec(mvtec, "train", size=(10, 12), channels=3)
    assert data.images.shape == (3, 3, 10, 12)
    assert data.class_names == ["good", "broken", "crack"] and data.labels.tolist() == [0, 0, 0]
    assert data.masks == [None] * 3 and data.orig_sizes[1] == (11, 9)


def test_mvtec_missing_mask(mvtec):
    (mvtec / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"crack/001.png: defect image has no mask .*001_mask.png"):
        read_mvtec(mvtec, "test", size=8)


def test_mvtec_mask_without_image(mvtec):
    mask(mvtec / "ground_truth" / "crack" / "007_mask.png", 10, 12)
    with pytest.raises(DataError, match=r"007_mask.png: mask has no image \(expected 007\.\*"):
        read_mvtec(mvtec, "test", size=8)


def test_mvtec_masks_for_unknown_type(mvtec):
    mask(mvtec / "ground_truth" / "scratch" / "000_mask.png", 10, 12)
    with pytest.raises(DataError, match=r"scratch: masks for defect type 'scratch' but there"):
        read_mvtec(mvtec, "test", size=8)


def test_mvtec_mask_of_another_size(mvtec):
    mask(mvtec / "ground_truth" / "crack" / "001_mask.png", 18, 18)
    with pytest.raises(DataError, match=r"001_mask.png: mask is 18x18 .* is 9x9"):
        read_mvtec(mvtec, "test", size=8)


def test_mvtec_without_ground_truth(mvtec):
    shutil.rmtree(mvtec / "ground_truth" / "broken")
    data = read_mvtec(mvtec, "test", size=8)
    assert data.masks[2] is None and data.masks[3] is not None  # no masks for that type
    shutil.rmtree(mvtec / "ground_truth")
    assert read_mvtec(mvtec, "test", size=8).masks == [None] * 5


def test_mvtec_empty_or_missing_folders(mvtec, tmp_path):
    (mvtec / "test" / "hole").mkdir()
    with pytest.raises(DataError, match=r"hole: test folder has no image files"):
        read_mvtec(mvtec, "test", size=8)
    with pytest.raises(DataError, match=r"nothing: MVTec-style category folder not found"):
        read_mvtec(tmp_path / "nothing", "test")
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataError, match=r"good: training folder not found"):
        read_mvtec(tmp_path / "bare", "train")


def test_real_magnetic_tile():
    root = shared("magnetic-tile")
    train = read_mvtec(root, "train", size=(32, 32))
    assert len(train) == 762 and set(train.labels.tolist()) == {0}
    test = read_mvtec(root, "test", size=(32, 32))
    names = ["good", "blowhole", "break", "crack", "fray", "uneven"]
    assert test.class_names == train.class_names == names
    assert np.bincount(test.labels).tolist() == [190, 115, 85, 57, 32, 103]
    assert test.images.shape == (582, 1, 32, 32)
    assert len(set(test.orig_sizes)) > 100  # sizes vary a lot
    good = test.labels == 0
    assert all(m is None for m, g in zip(test.masks, good, strict=True) if g)
    masks = [m for m in test.masks if m is not None]
    assert len(masks) == 392
    for m, size in zip(test.masks, test.orig_sizes, strict=True):
        assert m is None or (m.dtype == bool and m.shape == size)
    empty = [
        Path(p).name
        for p, m in zip(test.paths, test.masks, strict=True)
        if m is not None and not m.any()
    ]
    assert len(empty) == 4
    assert all(Path(p).parent.name == "uneven" for p in test.paths if Path(p).name in empty)
    i = int(np.flatnonzero(test.labels == 3)[0])  # a crack: compare with the raw soft mask
    stem = Path(test.paths[i]).stem
    raw = np.asarray(Image.open(root / "ground_truth" / "crack" / f"{stem}_mask.png"))
    assert len(np.unique(raw)) > 2  # soft edges in the file ...
    np.testing.assert_array_equal(test.masks[i], raw >= 128)  # ... binarised at 128

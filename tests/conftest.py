"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
_RNG = np.random.default_rng(0)  # images that save() writes


def shared(name: str) -> Path:
    """A path under ../shared/data, or skip the test naming what is missing."""
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"real data {p} is missing (expected ../shared/data beside the repo)")
    return p


@pytest.fixture(scope="session")
def mnist_test():
    """The real MNIST test split (10,000 images), read once per session."""
    from reconad.data.idx import read_idx

    d = shared("mnist")
    return read_idx(d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def mnist_small(mnist_test):
    """A small real subset: 512 training images of digit 1, and a 400-image test set of
    200 ones and 200 others, all from disjoint parts of MNIST's test split."""
    ones = np.flatnonzero(mnist_test.labels == 1)
    others = np.flatnonzero(mnist_test.labels != 1)
    train = mnist_test.subset(ones[:512])
    test = mnist_test.subset(np.concatenate([ones[600:800], others[:200]]))
    anomalous = np.r_[np.zeros(200, bool), np.ones(200, bool)]
    return train, test, anomalous


def save(path: Path, h: int = 8, w: int = 6, mode: str = "RGB", value=None) -> Path:
    """Write a random (or constant) image of ``mode`` (RGB or L) and size (h, w) to ``path``."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    array = _RNG.integers(0, 256, shape, dtype=np.uint8) if value is None else np.full(shape, value)
    Image.fromarray(array.astype(np.uint8), "RGB" if mode == "RGB" else "L").save(path)
    return path


def digit_zeros(side: int) -> np.ndarray:
    """scikit-learn's bundled 8x8 zeros (every machine has them, so tests using them never
    skip), upsampled bilinearly to ``side`` x ``side`` uint8 ``(N, 1, side, side)``."""
    return digit_images(side, 0)


def digit_images(side: int, digit: int) -> np.ndarray:
    """scikit-learn's bundled 8x8 images of ``digit``, as :func:`digit_zeros` gives the zeros."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images[d.target == digit]).float()[:, None] / 16.0
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Decoded-archive cache in the test's own folder, never the user's."""
    monkeypatch.setenv("RECONAD_CACHE", str(tmp_path / "cache"))

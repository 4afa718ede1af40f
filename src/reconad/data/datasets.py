"""The benchmark data sets by name: where their files are looked for, and how they are read.

The data root is, in order: the explicit argument, ``$RECONAD_DATA``, ``~/.cache/reconad``.
Inside it each data set is looked for in the layouts people usually have (our own folder
names, torchvision's, the official archives unpacked), and downloaded from the official
source when none is there and downloading is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from reconad.data.cifar import read_cifar10_pickles, read_cifar100_pickles
from reconad.data.classfolders import read_class_folders
from reconad.data.download import KNOWN_FILES, download_dataset
from reconad.data.gtsrb import GTSRB_CLASSES, find_gtsrb, read_gtsrb
from reconad.data.idx import read_idx
from reconad.data.imageset import DataError, ImageSet

__all__ = ["ALIASES", "DATASETS", "canonical_name", "load_dataset", "resolve_data_root"]

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR100_COARSE_CLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
]  # fmt: skip
FMNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def _info(channels: int, size: tuple[int, int], classes: list[str], description: str) -> dict:
    return {
        "channels": channels,
        "size": size,
        "classes": classes,
        "n_train": 50000 if channels == 3 else 60000,
        "n_test": 10000,
        "description": description,
    }


# Plain dicts: {"channels", "size" (h, w), "classes" (label names in label order),
# "n_train", "n_test", "description"}.
DATASETS: dict[str, dict] = {
    "mnist": _info(1, (28, 28), [str(i) for i in range(10)], "MNIST handwritten digits"),
    "fmnist": _info(1, (28, 28), FMNIST_CLASSES, "Fashion-MNIST garments"),
    "cifar10": _info(3, (32, 32), CIFAR10_CLASSES, "CIFAR-10 natural images"),
    "cifar100": _info(
        3, (32, 32), CIFAR100_COARSE_CLASSES, "CIFAR-100, labelled by its 20 coarse super-classes"
    ),
    "gtsrb": {
        **_info(3, (32, 32), GTSRB_CLASSES, "GTSRB traffic signs, cropped to their boxes"),
        "n_train": 39209,
        "n_test": 12630,
    },
}

ALIASES = {
    "fashion-mnist": "fmnist",
    "fashion_mnist": "fmnist",
    "fashionmnist": "fmnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}


def canonical_name(name: str) -> str:
    """The registry key of a named data set (aliases such as ``fashion-mnist`` resolved).

    Raises:
        DataError: the name is no known data set.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return key


def resolve_data_root(explicit: str | Path | None = None) -> Path:
    """The data root: ``explicit`` > ``$RECONAD_DATA`` > ``~/.cache/reconad``."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get("RECONAD_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "reconad"


def _idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of a split in ``folder``, gzipped or raw, or None.

    Matches the official names and common variants (``train-images.idx3-ubyte``).
    """
    prefix = "train" if split == "train" else "t10k"
    if not folder.is_dir():
        return None
    found = []
    for kind in ("images*idx3", "labels*idx1"):
        hits = sorted(folder.glob(f"{prefix}-{kind}*"))
        if not hits:
            return None
        found.append(hits[0])
    return found[0], found[1]


def _find_idx(folders: list[Path], split: str, names: list[str]) -> Callable[[], ImageSet] | None:
    for folder in folders:
        pair = _idx_pair(folder, split)
        if pair:
            return lambda pair=pair: read_idx(pair[0], pair[1], class_names=names)
    return None


def _check_cifar10(data: ImageSet, where: Path) -> ImageSet:
    if data.class_names != CIFAR10_CLASSES:
        raise DataError(
            f"{where}: expected the CIFAR-10 classes {CIFAR10_CLASSES}, found {data.class_names}"
        )
    return data


def _candidates(name: str, root: Path, split: str) -> tuple[list[str], Callable | None]:
    """The places looked at for ``name`` (for messages) and a reader for the first found."""
    if name in ("mnist", "fmnist"):
        sub = ["mnist", "MNIST/raw"] if name == "mnist" else ["fashion-mnist", "FashionMNIST/raw"]
        folders = [root / s for s in sub]
        looked = [f"{f}/{{train,t10k}}-{{images,labels}}-idx*-ubyte[.gz]" for f in folders]
        return looked, _find_idx(folders, split, DATASETS[name]["classes"])
    if name == "cifar10":
        pickles, jpg, folders = (
            root / "cifar-10-batches-py",
            root / "cifar10-jpg.tar.gz",
            root / "cifar10",
        )
        looked = [f"{pickles}/", f"{jpg}", f"{folders}/{{train,test}}/<class>/"]
        if (pickles / "batches.meta").is_file():
            return looked, lambda: read_cifar10_pickles(pickles, split)
        if jpg.is_file():
            return looked, lambda: _check_cifar10(read_class_folders(jpg, split), jpg)
        if (folders / split).is_dir():
            return looked, lambda: _check_cifar10(read_class_folders(folders, split), folders)
        return looked, None
    if name == "gtsrb":
        sub = "Final_Training" if split == "train" else "Final_Test"
        looked = [f"{root}/GTSRB/{sub}/Images/", f"{root}/{sub}/Images/"]
        found = find_gtsrb(root, split)
        return looked, None if found is None else (lambda: read_gtsrb(found, split))
    folder = root / "cifar-100-python"
    looked = [f"{folder}/"]
    if (folder / "meta").is_file():
        return looked, lambda: read_cifar100_pickles(folder, split, coarse=True)
    return looked, None


def load_dataset(
    name: str, split: str, root: str | Path | None = None, download: bool = True
) -> ImageSet:
    """Load a benchmark data set by name from the data root, downloading it if needed.

    Layouts looked for, in this order:

    * ``mnist``: ``root/mnist/`` or ``root/MNIST/raw/`` (IDX files, gzipped or raw)
    * ``fmnist`` (alias ``fashion-mnist``): ``root/fashion-mnist/`` or
      ``root/FashionMNIST/raw/``
    * ``cifar10``: ``root/cifar-10-batches-py/`` (official pickles), then
      ``root/cifar10-jpg.tar.gz`` (class-folder JPEG copy: lossy, pixel values differ
      slightly from the official ones), then ``root/cifar10/<split>/<class>/``
    * ``cifar100``: ``root/cifar-100-python/`` (official pickles, 20 coarse labels)
    * ``gtsrb``: ``root/GTSRB/Final_Training/Images/000NN/`` (+ ``GT-000NN.csv``) and
      ``root/GTSRB/Final_Test/Images/`` (+ ``GT-final_test.csv``); signs cropped to their
      boxes and resized to 32x32 (no download: get it from the benchmark's site)

    Args:
        name: ``"mnist"``, ``"fmnist"``, ``"cifar10"``, ``"cifar100"``, ``"gtsrb"`` (or an
            alias).
        split: ``"train"`` or ``"test"``.
        root: the data root; see ``resolve_data_root``.
        download: when nothing is found, fetch the official files into ``root``.

    Returns:
        ImageSet with labels and class names; ``meta`` names the data set, split and source.

    Raises:
        ValueError: unknown name or split.
        DataError: the data set is not in ``root`` and could not be downloaded; the message
            lists the places looked at and how to point ``RECONAD_DATA`` at a copy.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    data_root = resolve_data_root(root)
    looked, reader = _candidates(key, data_root, split)
    failure = "downloading is turned off (download=False)"
    if reader is None and download and key not in KNOWN_FILES:
        failure = f"reconad knows no download for {key!r} (get it from its official site)"
    elif reader is None and download:
        try:
            download_dataset(key, data_root)
            looked, reader = _candidates(key, data_root, split)
        except DataError as err:
            failure = f"the download failed: {err}"
    if reader is None:
        places = "\n".join(f"  {p}" for p in looked)
        raise DataError(
            f"data set {key!r} not found in the data root {data_root}; looked for:\n{places}\n"
            f"and {failure}.\nPut a copy in one of those places, or set RECONAD_DATA (or pass "
            "root=...) to the folder that holds it."
        )
    data = reader()
    data.meta.update(dataset=key, split=split)
    return data

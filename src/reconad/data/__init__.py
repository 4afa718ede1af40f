"""Readers for the on-disk formats, the in-memory ImageSet, and the one-class protocol."""

from reconad.data.cifar import read_cifar10_pickles, read_cifar100_pickles
from reconad.data.classfolders import read_class_folders
from reconad.data.datasets import DATASETS, load_dataset, resolve_data_root
from reconad.data.download import KNOWN_FILES, download_dataset, download_file, extract_tar
from reconad.data.folders import (
    IMAGE_EXTENSIONS,
    load_image,
    read_flat_folder,
    read_image_files,
    read_mvtec,
)
from reconad.data.idx import read_idx
from reconad.data.imageset import DataError, ImageSet

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "KNOWN_FILES",
    "DataError",
    "ImageSet",
    "download_dataset",
    "download_file",
    "extract_tar",
    "load_dataset",
    "load_image",
    "read_cifar10_pickles",
    "read_cifar100_pickles",
    "read_class_folders",
    "read_flat_folder",
    "read_idx",
    "read_image_files",
    "read_mvtec",
    "resolve_data_root",
]
